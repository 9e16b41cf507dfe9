"""An SMTP session from the app's configuration. `mailer` knows nothing of Flask; this
is where its settings come from."""

from __future__ import annotations

from flask import current_app

from .mailer import SmtpSession


def smtp_session() -> SmtpSession:
    """A new, unopened SMTP session to the configured relay (SMTP_*)."""
    config = current_app.config
    return SmtpSession(
        config["SMTP_HOST"],
        config["SMTP_PORT"],
        username=config["SMTP_USERNAME"],
        password=config["SMTP_PASSWORD"],
        starttls=config["SMTP_STARTTLS"],
        timeout=config["SMTP_TIMEOUT"],
    )
