"""Transactional emails (confirmation, preferences link, staff test sends), each queued
after the change that asks for it is committed."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from webapp import notifications, preview, subscriptions
from webapp.mailer import MailerError
from webapp.transactions import transaction

# A CSV import of 100,000 readers queues one task per this many, not one per reader.
CONFIRMATION_CHUNK = 500


def _retry_later(task, exc: MailerError, subscriber_ids: list[int], **options) -> None:
    """Try again with a growing delay (a greylisting server asks for exactly that); when the
    tries run out, the readers' once-a-day stamp is released: nothing was sent."""
    if task.request.retries >= task.max_retries:
        with transaction():
            for subscriber_id in subscriber_ids:
                subscriptions.release_claim(subscriber_id)
        raise exc
    delay = current_app.config["NOTIFICATION_RETRY_SECONDS"] * 2**task.request.retries
    raise task.retry(exc=exc, countdown=delay, **options) from exc


@shared_task(bind=True, name="bulletin.send_confirmation", max_retries=6)
def send_confirmation(self, subscriber_id: int) -> None:
    try:
        with transaction():  # a refused email released its stamp
            notifications.send_confirmation(subscriber_id)
    except MailerError as exc:
        _retry_later(self, exc, [subscriber_id])


@shared_task(bind=True, name="bulletin.send_confirmations", max_retries=6)
def send_confirmations(self, subscriber_ids: list[int]) -> None:
    """Many confirmations in one task; on SMTP trouble, the ones not yet sent are retried."""
    for position, subscriber_id in enumerate(subscriber_ids):
        try:
            with transaction():
                notifications.send_confirmation(subscriber_id)
        except MailerError as exc:
            rest = subscriber_ids[position:]
            _retry_later(self, exc, rest, args=(rest,))


def queue_confirmations(subscriber_ids: list[int]) -> None:
    for start in range(0, len(subscriber_ids), CONFIRMATION_CHUNK):
        send_confirmations.delay(subscriber_ids[start : start + CONFIRMATION_CHUNK])


@shared_task(bind=True, name="bulletin.answer_sign_up", max_retries=6)
def answer_sign_up(self, subscriber_id: int | None, email: str) -> None:
    """The email a web sign-up calls for, if any. Queued for every sign-up, so that the answer
    to a new address and to a known one do the same work (see public.views.subscribe)."""
    send = {
        "confirmation": notifications.send_confirmation,
        "preferences-link": notifications.send_preferences_link,
    }.get(email)
    if send is None or subscriber_id is None:
        return
    try:
        with transaction():
            send(subscriber_id)
    except MailerError as exc:
        _retry_later(self, exc, [subscriber_id])


@shared_task(bind=True, name="bulletin.send_preferences_link", max_retries=6)
def send_preferences_link(self, subscriber_id: int) -> None:
    try:
        with transaction():
            notifications.send_preferences_link(subscriber_id)
    except MailerError as exc:
        _retry_later(self, exc, [subscriber_id])


@shared_task(bind=True, name="bulletin.send_test_issue", max_retries=3)
def send_test_issue(self, issue_id: int, topic_ids: list[int], locale: str, to_email: str) -> str:
    try:
        result = preview.send_test(issue_id, topic_ids, locale, to_email)
    except MailerError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    return result.reply


@shared_task(bind=True, name="bulletin.send_review_request", max_retries=3)
def send_review_request(self, issue_id: int, reviewer_email: str) -> None:
    """A reviewer's two emails for a submitted issue: the request with the preview link, and
    the test message (every section, in Chinese) as readers would get it."""
    from webapp.issues import issue_topic_ids

    try:
        notifications.send_review_request(issue_id, reviewer_email)
        preview.send_test(issue_id, sorted(issue_topic_ids(issue_id)), "zh", reviewer_email)
    except MailerError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
