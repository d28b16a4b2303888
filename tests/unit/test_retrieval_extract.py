"""What File Search reads of a document: text types, HTML as shown, PDFs page by page, DOCX."""

from __future__ import annotations

import io

import docx
import pytest
from pypdf import PdfReader, PdfWriter

from localgem.retrieval.extract import DOCX, Section, extract, guess_mime, html_text
from tests.uploads import make_pdf


def two_page_pdf() -> bytes:
    writer = PdfWriter()
    for lines in (["The first page speaks of apples."], ["The second page names the dragon Smaug."]):
        writer.append(PdfReader(io.BytesIO(make_pdf(lines))))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def a_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew by twelve percent.")
    table = document.add_table(rows=2, cols=2)
    for r, row in enumerate([("region", "sales"), ("north", "42")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    document.add_paragraph("Signed, the board.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_text_types_are_read_as_they_are() -> None:
    for mime in ("text/plain", "text/markdown", "text/csv", "application/json", "text/x-python"):
        assert extract("# Title\nbody ✓".encode(), mime) == [Section("# Title\nbody ✓")]


def test_html_is_read_as_a_browser_shows_it() -> None:
    html = (
        "<html><head><title>Doc</title><style>p{color:red}</style><script>var x = 1;</script></head>"
        "<body><h1>Heading</h1><p>First &amp; <b>bold</b> para.</p><ul><li>one</li><li>two</li></ul></body></html>"
    )
    assert html_text(html) == "Doc\nHeading\nFirst & bold para.\none\ntwo"
    assert extract(html.encode(), "text/html; charset=utf-8")[0].text == html_text(html)


def test_pdfs_are_read_page_by_page() -> None:
    pages = extract(two_page_pdf(), "application/pdf")
    assert [p.page for p in pages] == [1, 2]
    assert "apples" in pages[0].text and "Smaug" in pages[1].text


def test_docx_paragraphs_and_tables_in_order() -> None:
    text = extract(a_docx(), DOCX)[0].text
    assert text.splitlines() == [
        "Quarterly report",
        "Revenue grew by twelve percent.",
        "region | sales",
        "north | 42",
        "Signed, the board.",
    ]


@pytest.mark.parametrize(
    ("data", "mime", "said"),
    [
        (b"\xff\xfe\x00bad", "text/plain", "not UTF-8"),
        (b"%PDF-1.4 broken", "application/pdf", "not a readable PDF"),
        (b"PK\x03\x04 not a zip", DOCX, "not a readable DOCX"),
        (b"\x89PNG\r\n", "image/png", "cannot be indexed"),
    ],
)
def test_unreadable_documents_say_why(data: bytes, mime: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        extract(data, mime)


def test_a_type_is_guessed_from_the_name_or_the_bytes() -> None:
    assert guess_mime(b"", "notes.md") == "text/markdown"
    assert guess_mime(b"", "report.pdf") == "application/pdf"
    assert guess_mime(two_page_pdf(), None) == "application/pdf"
    assert guess_mime(a_docx(), None) == DOCX
    assert guess_mime("plain words ✓".encode(), None) == "text/plain"
    assert guess_mime(b"\x00\x01\xff\xfe" * 10, None) == "application/octet-stream"
