"""Tell a bulletin document's format by its bytes and read Word and PDF files.

Formats are told apart by content, never by the file name: ``%PDF-`` is a PDF, a ZIP with
``word/document.xml`` is a .docx, the OLE2 signature is an old binary Word file, anything
else is taken as Markdown text (and refused by the Markdown decoder if it is not text).
"""

from __future__ import annotations

import io
import zipfile

from ..document import Document, DocumentError

# A bulletin is ~100 KB of text; a PDF of it with embedded CJK fonts is ~1.5 MB, a Word
# file with a few pictures a few MB. 20 MB is generous and still bounds the work.
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
# A .docx is a ZIP: refuse one whose XML would unpack to more than this (a "zip bomb").
_MAX_UNPACKED_BYTES = 200 * 1024 * 1024

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def check_size(size: int, limit: int = MAX_DOCUMENT_BYTES) -> None:
    """Refuse a document over the size limit (in bytes) before reading it."""
    if size > limit:
        megabytes = f"{limit / (1024 * 1024):g}"
        raise DocumentError("document-too-large", limit=megabytes)


def detect_format(data: bytes) -> str:
    """ "pdf", "docx" or "markdown"; raises DocumentError for formats we know we cannot read."""
    head = data[:1024]
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(_OLE2):
        raise DocumentError("document-doc")
    if head.startswith(b"{\\rtf"):
        raise DocumentError("document-rtf")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
                unpacked = sum(info.file_size for info in archive.infolist())
        except zipfile.BadZipFile:
            raise DocumentError("document-zip-damaged") from None
        if "word/document.xml" not in names:
            raise DocumentError("document-not-docx")
        if unpacked > _MAX_UNPACKED_BYTES:
            # A Word file that unpacks to more than 200 MB: not a bulletin.
            raise DocumentError(
                "document-too-large", limit=f"{MAX_DOCUMENT_BYTES / (1024 * 1024):g}"
            )
        return "docx"
    return "markdown"


def read_binary(data: bytes, format: str) -> Document:
    """Read a .docx or PDF into the intermediate document."""
    if format == "pdf":
        from .pdf import read_pdf

        return read_pdf(data)
    from .word import read_docx

    return read_docx(data)
