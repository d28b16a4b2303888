"""Business logic per API resource. Services know nothing of HTTP; they raise ``localgem.errors``."""
