"""Uploaded documents held on the server between the staff import's two steps.

Step one (report) reads the upload and shows what the import would make; step two (save)
must import the very same bytes. A Markdown file could travel back in a form field, but a
.docx or a PDF is binary and up to the size limit, so the file stays on the server: in the
instance folder under a random name, and the page carries only a signed, expiring ticket
naming it and the staff member who uploaded it. Nobody can point the save step at another
file, at someone else's upload, or at an upload older than ``HOLD_SECONDS``.

Held files older than that are removed whenever another upload is held; a saved import
removes its file at once.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

HOLD_SECONDS = 3600  # an editor reads the report and decides within an hour
_SALT = "bulletin.import-upload"


class HeldUploadError(LookupError):
    """The ticket is forged, expired, for another staff member, or its file is gone."""


def _folder() -> Path:
    folder = Path(current_app.instance_path) / "import-uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=_SALT)


def hold_upload(data: bytes, staff_id: int) -> str:
    """Store ``data`` and return the signed ticket that fetches it back (writes a file)."""
    _sweep()
    name = secrets.token_hex(16)
    path = _folder() / f"{name}.upload"
    path.write_bytes(data)
    return _serializer().dumps({"file": name, "staff": staff_id})


def held_path(ticket: str, staff_id: int) -> Path:
    """The held file the ticket names; raises HeldUploadError if it may not be used."""
    try:
        claim = _serializer().loads(ticket, max_age=HOLD_SECONDS)
    except BadSignature:
        raise HeldUploadError("the upload ticket is invalid or has expired") from None
    name = claim.get("file", "") if isinstance(claim, dict) else ""
    if claim.get("staff") != staff_id or not name.isalnum():
        raise HeldUploadError("the upload ticket belongs to another session")
    path = _folder() / f"{name}.upload"
    if not path.is_file():
        raise HeldUploadError("the uploaded file is no longer held")
    return path


def release(ticket: str, staff_id: int) -> None:
    """Remove the held file once its import is saved."""
    try:
        held_path(ticket, staff_id).unlink(missing_ok=True)
    except HeldUploadError:
        pass  # already gone: nothing left to release


def _sweep() -> None:
    cutoff = time.time() - HOLD_SECONDS
    for path in _folder().glob("*.upload"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        except FileNotFoundError:
            continue  # another worker swept it first
