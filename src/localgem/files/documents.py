"""What a text model can read of a document: text-like types as they are, PDFs by their extracted text."""

from __future__ import annotations

import io

from localgem import errors

PDF = "application/pdf"
_TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/x-yaml",
    "application/yaml",
    "application/javascript",
    "application/x-javascript",
    "application/typescript",
    "application/x-python",
    "application/x-python-code",
    "application/x-sh",
    "application/sql",
    "application/x-sql",
    "application/toml",
    "application/x-tex",
    "application/rtf",
    "application/csv",
    "application/x-ndjson",
    "application/jsonl",
}


def base_type(mime: str | None) -> str:
    return (mime or "").split(";")[0].strip().lower()


def is_text(mime: str) -> bool:
    mime = base_type(mime)
    return mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith(("+json", "+xml"))


def is_readable(mime: str) -> bool:
    return is_text(mime) or base_type(mime) == PDF


def unreadable(where: str, mime: str) -> errors.InvalidArgument:
    return errors.invalid_field(
        where,
        f"Unsupported MIME type {base_type(mime)!r} at {where}: this server reads text (text/*, "
        "JSON/XML/YAML/CSV, source code), PDF documents and, with its speech and OCR models, audio, video "
        "soundtracks and PNG/JPEG/WEBP/HEIC/HEIF/GIF/BMP images.",
    )


def decode_text(data: bytes, mime: str, where: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise errors.invalid_field(where, f"{where} is declared {base_type(mime)} but is not UTF-8 text.") from None


def pdf_text(data: bytes) -> str:
    """The text of every page, pages separated by blank lines. Raises ValueError for a broken PDF."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ValueError(f"not a readable PDF: {exc}") from exc
    return "\n\n".join(text.strip() for text in pages).strip()


def document_text(data: bytes, mime: str, where: str) -> str:
    """Inline document bytes → prompt text, or a 400 naming ``where``."""
    if is_text(mime):
        return decode_text(data, mime, where)
    if base_type(mime) == PDF:
        try:
            return pdf_text(data)
        except ValueError as exc:
            raise errors.invalid_field(where, f"{where}: {exc}") from None
    raise unreadable(where, mime)
