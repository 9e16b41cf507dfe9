"""Staff accounts: create, set a new password, authenticate. Passwords are stored as scrypt
hashes."""

from __future__ import annotations

import secrets

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import BulletinError
from .extensions import db
from .models import StaffRole, StaffUser
from .subscriptions import normalize_email

MIN_PASSWORD_LENGTH = 10


class StaffError(BulletinError):
    """A staff account we cannot create or change; the code says why."""


def create_staff(email: str, password: str | None = None, role: StaffRole = StaffRole.EDITOR):
    """Create a staff account; returns (user, password). A password is generated when none is
    given, and is returned only here: we keep nothing but its hash."""
    address = normalize_email(email)
    if db.session.scalar(select(StaffUser).where(StaffUser.email == address)):
        raise StaffError("staff-exists", email=address)
    password = _new_password(password)
    user = StaffUser(email=address, password_hash=generate_password_hash(password), role=role)
    db.session.add(user)
    db.session.flush()
    return user, password


def set_password(email: str, password: str | None = None):
    """Give an existing staff account a new password (for one that was lost) and end its
    sessions; returns (user, password). As with create_staff, a generated password is
    returned only here."""
    address = email.strip().lower()
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == address))
    if user is None:
        raise StaffError("staff-missing", email=address)
    password = _new_password(password)
    user.password_hash = generate_password_hash(password)
    end_sessions(user)
    return user, password


def _new_password(password: str | None) -> str:
    password = password or secrets.token_urlsafe(12)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError("staff-password-short", count=MIN_PASSWORD_LENGTH)
    return password


def end_sessions(user: StaffUser) -> None:
    """Every session signed in before this one stops working at its next request."""
    user.session_version += 1
    db.session.flush()


def deactivate(user: StaffUser) -> None:
    user.active = False
    end_sessions(user)


# Compared against when the address is unknown, so a wrong address and a wrong password take
# the same time and the login form does not reveal which staff addresses exist.
_DUMMY_HASH = generate_password_hash("not a real password")


def authenticate(email: str, password: str) -> StaffUser | None:
    """The active staff user with these credentials, or None."""
    user = db.session.scalar(select(StaffUser).where(StaffUser.email == email.strip().lower()))
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password) or not user.active:
        return None
    return user
