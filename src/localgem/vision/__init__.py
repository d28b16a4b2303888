"""Images for text models: decoded (Pillow, HEIF/HEIC through pillow-heif) and read by OCR, marked as
such; a text model is never told it saw the picture."""
