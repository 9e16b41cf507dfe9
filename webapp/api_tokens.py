"""API tokens: create (the secret is returned once), authenticate, revoke.

A token's secret is 256 random bits, so a plain SHA-256 of it is as safe to keep as a slow
password hash and can be looked up by value; nothing else about the secret is stored but
its first characters, for staff to tell tokens apart.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update

from . import audit
from .errors import BulletinError
from .extensions import db
from .models import ApiToken, ApiTokenRole, StaffRole, utcnow

PREFIX = "blt_"
NAME_MAX = 100
# last_used_at is written at most this often per token: a busy client does not turn every
# read into a write.
LAST_USED_PRECISION = timedelta(minutes=1)


class ApiTokenError(BulletinError):
    """A token we cannot create or change; the code says why."""


@dataclass(frozen=True)
class ApiActor:
    """Who a token acts as, for the domain functions that take the staff member acting
    (`review.approve`, the audit log): an address-like name and a staff role."""

    token_id: int
    email: str
    role: StaffRole | None  # None: read-only
    token_role: ApiTokenRole

    # What Flask-Login asks of a user, so `current_user` can be the token during a call.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"api-token:{self.token_id}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(name: str, role: ApiTokenRole, *, created_by: str) -> tuple[ApiToken, str]:
    """Make a token; returns (token, secret). The secret is returned only here. Audited."""
    name = name.strip()
    if not name:
        raise ApiTokenError("api-token-name-missing", field="name")
    if len(name) > NAME_MAX:
        raise ApiTokenError("api-token-name-too-long", field="name", count=NAME_MAX)
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name,
        role=ApiTokenRole(role),
        token_hash=_digest(secret),
        prefix=secret[:10],
        created_by=created_by,
    )
    db.session.add(token)
    db.session.flush()
    audit.record("api-token-create", detail=f"#{token.id} {name} ({token.role.value})")
    return token, secret


def revoke(token_id: int) -> ApiToken:
    """Stop a token from working, at once and for good (flushed, audited)."""
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise ApiTokenError("api-token-missing", id=token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        db.session.flush()
        audit.record("api-token-revoke", detail=f"#{token.id} {token.name}")
    return token


def tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def authenticate(secret: str) -> ApiActor | None:
    """The actor of a live token with this secret, or None; notes when it was last used
    (flushed: the caller commits)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_PRECISION:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return actor_of(token)


def actor_of(token: ApiToken) -> ApiActor:
    role = {
        ApiTokenRole.READ_ONLY: None,
        ApiTokenRole.EDITOR: StaffRole.EDITOR,
        ApiTokenRole.ADMIN: StaffRole.ADMIN,
    }[token.role]
    return ApiActor(
        token_id=token.id,
        email=f"api-token:{token.name} (#{token.id})",
        role=role,
        token_role=token.role,
    )
