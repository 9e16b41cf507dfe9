"""Transactional emails to readers (confirmation), sent after the sign-up is committed."""

from __future__ import annotations

from celery import shared_task

from webapp import notifications
from webapp.mailer import MailerError


@shared_task(bind=True, name="bulletin.send_confirmation", max_retries=6)
def send_confirmation(self, subscriber_id: int) -> None:
    try:
        notifications.send_confirmation(subscriber_id)
    except MailerError as exc:
        raise self.retry(exc=exc, countdown=60 * 2**self.request.retries) from exc
