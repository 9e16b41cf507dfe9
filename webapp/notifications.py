"""Transactional emails to one reader: the double opt-in confirmation."""

from __future__ import annotations

from email.utils import parseaddr

from flask import current_app

from .delivery import outgoing_bytes, smtp_session
from .extensions import db
from .mailer import Outcome, build_message
from .models import Subscriber, SubscriberStatus
from .rendering import render_confirmation
from .tokens import Purpose, external_url, make_token


def send_confirmation(subscriber_id: int) -> bool:
    """Email a pending reader their signed confirmation link. Returns whether it was sent.

    Readers who are no longer pending (confirmed meanwhile, or left) get nothing.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status != SubscriberStatus.PENDING:
        return False
    config = current_app.config
    token = make_token(Purpose.CONFIRM, {"s": subscriber.id})
    email = render_confirmation(
        bulletin_name=config["BULLETIN_NAME"],
        name=subscriber.name,
        section_names=[t.name for t in subscriber.topics],
        confirm_url=external_url("public.confirm", token=token),
        locale=subscriber.locale,
        postal_address=config["POSTAL_ADDRESS"],
    )
    message = build_message(
        sender=config["MAIL_FROM"],
        to_email=subscriber.email,
        to_name=subscriber.name,
        subject=email.subject,
        text=email.text,
        html=email.html,
        headers={"Auto-Submitted": "auto-generated"},
    )
    with smtp_session() as session:
        result = session.send(
            parseaddr(config["MAIL_FROM"])[1], subscriber.email, outgoing_bytes(message)
        )
    return result.outcome == Outcome.SENT
