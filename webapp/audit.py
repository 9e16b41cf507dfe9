"""The staff audit log: who published, paused, cancelled or edited what, and when."""

from __future__ import annotations

from flask_login import current_user
from sqlalchemy import select

from .extensions import db
from .models import AuditEntry


def record(
    action: str, *, issue_id: int | None = None, detail: str = "", who: str | None = None
) -> None:
    """Note an action by the signed-in staff member (or 'system', or `who`: the address a
    failed sign-in typed); flushed with the change, so the entry is committed with it or not
    at all."""
    who = who or getattr(current_user, "email", None) or "system"
    db.session.add(
        AuditEntry(staff_email=who, action=action, issue_id=issue_id, detail=detail[:1000])
    )


def entries(*, issue_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
    if issue_id is not None:
        query = query.where(AuditEntry.issue_id == issue_id)
    return list(db.session.scalars(query.limit(limit)))
