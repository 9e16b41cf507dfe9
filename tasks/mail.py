"""Transactional emails to readers (confirmation), sent after the sign-up is committed."""

from __future__ import annotations

from celery import shared_task

from webapp import notifications, preview
from webapp.mailer import MailerError


@shared_task(bind=True, name="bulletin.send_confirmation", max_retries=6)
def send_confirmation(self, subscriber_id: int) -> None:
    try:
        notifications.send_confirmation(subscriber_id)
    except MailerError as exc:
        raise self.retry(exc=exc, countdown=60 * 2**self.request.retries) from exc


@shared_task(bind=True, name="bulletin.send_test_issue", max_retries=3)
def send_test_issue(self, issue_id: int, topic_ids: list[int], locale: str, to_email: str) -> str:
    try:
        result = preview.send_test(issue_id, topic_ids, locale, to_email)
    except MailerError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    return result.reply
