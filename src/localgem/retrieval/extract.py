"""A document's text for retrieval, in sections that know where they came from (a PDF's pages).

Text types (plain, Markdown, CSV, JSON, source code…) are read as UTF-8; HTML by the standard
library's parser (what a browser would show: no scripts, styles or tags; blocks on lines of their
own); PDFs page by page with pypdf (so a chunk can say its ``pageNumber``); Word documents (DOCX) with
python-docx, paragraphs and table rows in order. Anything else, or bytes that are not what they say,
is a ValueError whose message the document's failure reports.
"""

from __future__ import annotations

import io
import mimetypes
from dataclasses import dataclass
from html.parser import HTMLParser

from localgem.files.documents import PDF, base_type, is_text

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML = {"text/html", "application/xhtml+xml"}
_EXTRA_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".jsonl": "application/jsonl"}


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based, for paged formats


def mime_by_name(file_name: str | None) -> str | None:
    if not file_name:
        return None
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(file_name)[0]


def guess_mime(data: bytes, file_name: str | None) -> str:
    """The type of an upload that did not say one: by its name, else by its first bytes."""
    if guessed := mime_by_name(file_name):
        return guessed
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04") and b"word/" in data[:4096]:
        return DOCX
    try:
        data[:4096].decode("utf-8")
        return "text/plain"
    except UnicodeDecodeError as exc:
        if exc.start >= 4090:  # cut inside a character at the sample's end
            return "text/plain"
        return "application/octet-stream"


def is_extractable(mime: str) -> bool:
    kind = base_type(mime)
    return is_text(kind) or kind in (PDF, DOCX)


def extract(data: bytes, mime: str) -> list[Section]:
    kind = base_type(mime)
    if kind in HTML:
        return [Section(html_text(_utf8(data, kind)))]
    if is_text(kind):
        return [Section(_utf8(data, kind))]
    if kind == PDF:
        return _pdf_pages(data)
    if kind == DOCX:
        return [Section(_docx_text(data))]
    raise ValueError(
        f"{kind or 'this type'} cannot be indexed: File Search reads text, Markdown, HTML, JSON, CSV, "
        "source code, PDF and DOCX documents"
    )


def _utf8(data: bytes, kind: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"the document is declared {kind} but is not UTF-8 text") from None


def _pdf_pages(data: bytes) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        return [Section((page.extract_text() or "").strip(), n) for n, page in enumerate(reader.pages, start=1)]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise ValueError(f"not a readable PDF: {exc}") from exc


def _docx_text(data: bytes) -> str:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"not a readable DOCX document: {exc}") from exc
    lines: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, docx.table.Table):
            lines += [" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows]
        else:
            lines.append(block.text)
    return "\n".join(lines).strip()


_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "h1", "h2",
    "h3", "h4", "h5", "h6", "pre", "blockquote", "title", "dt", "dd", "hr", "nav", "aside", "main", "figure",
}  # fmt: skip
_HIDDEN = {"script", "style", "noscript", "template"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
