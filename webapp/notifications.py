"""Transactional emails to one reader: the double opt-in confirmation and, for a reader
who is already subscribed and whose address was submitted again, their preferences link;
and to one staff member: an issue waiting for their review."""

from __future__ import annotations

import logging

from flask import current_app

from . import identity
from .digests import outgoing_bytes
from .extensions import db
from .i18n import topic_name
from .mailer import AddressError, MailerError, Outcome, build_message
from .models import Issue, Subscriber, SubscriberStatus
from .rendering import (
    RenderedEmail,
    render_confirmation,
    render_preferences_notice,
    render_review_request,
)
from .smtp import smtp_session
from .subscriptions import link_payload, release_claim
from .tokens import Purpose, external_url, make_token

log = logging.getLogger(__name__)


class TemporaryFailure(MailerError):
    """The server answered 4xx (greylisting, a full queue): the task tries again later."""


def send_confirmation(subscriber_id: int) -> bool:
    """Email a pending reader their signed confirmation link. Returns whether it was sent.

    Readers who are no longer pending (confirmed meanwhile, or left) get nothing.
    """
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status != SubscriberStatus.PENDING:
        return False
    token = make_token(Purpose.CONFIRM, link_payload(subscriber))
    # Not the name: whoever typed this address typed it too, and this email goes to a
    # stranger until they confirm. Anyone's text must not reach them through us.
    email = render_confirmation(
        identity=identity.current(),
        name="",
        section_names=[topic_name(t, subscriber.locale) for t in subscriber.topics],
        confirm_url=external_url("public.confirm", token=token),
        locale=subscriber.locale,
    )
    return _send(subscriber, email, to_name="")


def send_preferences_link(subscriber_id: int) -> bool:
    """Email an active reader the link to their preferences page."""
    subscriber = db.session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE:
        return False
    token = make_token(Purpose.PREFERENCES, link_payload(subscriber))
    email = render_preferences_notice(
        identity=identity.current(),
        name=subscriber.name,
        section_names=[topic_name(t, subscriber.locale) for t in subscriber.topics],
        preferences_url=external_url("public.preferences", token=token),
        locale=subscriber.locale,
    )
    return _send(subscriber, email)


def send_review_request(issue_id: int, reviewer_email: str) -> bool:
    """Tell a reviewer an issue waits for them, with the link to its staff preview."""
    issue = db.session.get(Issue, issue_id)
    if issue is None:
        return False
    email = render_review_request(
        identity=identity.current(),
        issue_title=issue.title,
        submitted_by=issue.submitted_by,
        preview_url=external_url("admin.preview_issue", issue_id=issue.id),
    )
    return _send_to(reviewer_email, "", email)


def _send(subscriber: Subscriber, email: RenderedEmail, *, to_name: str | None = None) -> bool:
    name = subscriber.name if to_name is None else to_name
    return _send_to(
        subscriber.email, name, email, subscriber_id=subscriber.id, locale=subscriber.locale
    )


def _send_to(
    address: str,
    name: str,
    email: RenderedEmail,
    *,
    subscriber_id: int | None = None,
    locale: str = "zh",
) -> bool:
    config = current_app.config
    try:
        message = build_message(
            sender=identity.sender(locale),
            to_email=address,
            to_name=name,
            subject=email.subject,
            text=email.text,
            html=email.html,
            headers={"Auto-Submitted": "auto-generated"},
        )
    except AddressError as exc:  # a row from before sign-up refused such addresses
        log.warning(
            "not emailing %s: %s", f"reader {subscriber_id}" if subscriber_id else address, exc
        )
        return False
    with smtp_session() as session:
        data = outgoing_bytes(message)
        result = session.send(config["MAIL_FROM_ADDRESS"], address, data)
    if result.outcome == Outcome.TEMPORARY:
        raise TemporaryFailure(result.reply)
    if result.outcome in (Outcome.PERMANENT, Outcome.POLICY):
        if subscriber_id is None:
            log.warning("email to %s refused: %s", address, result.reply)
        else:
            log.warning("confirmation to reader %s refused: %s", subscriber_id, result.reply)
            release_claim(subscriber_id)
    return result.outcome == Outcome.SENT
