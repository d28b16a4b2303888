"""localgem: the Gemini API, served from open-weight models on your own machine."""

__version__ = "0.1.0"
