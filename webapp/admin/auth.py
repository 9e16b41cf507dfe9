"""Staff sign-in, and the rule that every staff page needs it.

Every view of the blueprint requires a signed-in, active staff member unless it is listed
in PUBLIC_ENDPOINTS, so a new page is protected by default. Admin-only pages add
`@admin_only`.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_limiter.util import get_remote_address
from flask_login import current_user, login_required, login_user, logout_user

from .. import audit, staff
from ..extensions import db, limiter, login_manager
from ..models import StaffRole, StaffUser
from ..subscriptions import email_hash
from ..transactions import transaction
from . import bp
from .forms import LoginForm

PUBLIC_ENDPOINTS = {"admin.login"}

login_manager.login_view = "admin.login"


@login_manager.user_loader
def load_user(user_id: str) -> StaffUser | None:
    """The user of a session id "id:version"; None (signed out) once the version moved on."""
    number, _sep, version = user_id.partition(":")
    if not number.isdigit() or not version.isdigit():
        return None  # a cookie from before session versions: sign in again
    user = db.session.get(StaffUser, int(number))
    if user is None or user.session_version != int(version):
        return None
    return user


@bp.before_request
def require_staff():
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


def is_admin() -> bool:
    return current_user.is_authenticated and current_user.role == StaffRole.ADMIN


def admin_only(view):
    """Editors work on content and see aggregate numbers. Readers' addresses, consent
    evidence, the per-recipient delivery log, previews as a named reader, sections and staff
    are for admins."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not is_admin():
            abort(403)
        return view(*args, **kwargs)

    wrapped.admin_only = True  # read by the access test that walks the URL map
    return wrapped


def _login_address_and_account() -> str:
    """Guesses at one account from one address. Never the account alone: strangers' wrong
    passwords from elsewhere would then lock its owner out."""
    return f"staff-login:{get_remote_address()}:{email_hash(request.form.get('email', ''))}"


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["RATELIMIT_LOGIN"], methods=["POST"])
@limiter.limit(
    lambda: current_app.config["RATELIMIT_LOGIN_ACCOUNT"],
    key_func=_login_address_and_account,
    methods=["POST"],
)
def login():
    form = LoginForm()
    if form.validate_on_submit():
        user = staff.authenticate(form.email.data, form.password.data)
        if user is not None:
            # A CSRF token seen before sign-in (on a shared computer, say) is no use after.
            # Flask-WTF also keeps the signed token of this request in g; drop both, or the
            # next page in the same app context would sign the old one again.
            session.pop("csrf_token", None)
            g.pop("csrf_token", None)
            login_user(user)
            return redirect(url_for("admin.dashboard"))
        with transaction():
            audit.record(
                "login-failed",
                who=form.email.data.strip().lower()[:320],
                detail=f"from {get_remote_address()}",
            )
        form.password.errors.append(_("邮箱或密码不正确。"))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/login.html", form=form), status


@bp.post("/logout")
@login_required
def logout():
    # Ends this session everywhere, also in a copy of the cookie (and the user's other
    # sessions): the version in every cookie issued so far no longer matches.
    with transaction():
        staff.end_sessions(current_user)
    logout_user()
    return redirect(url_for("admin.login"))
