"""Thin Celery wrappers around `webapp.delivery`. Tasks take ids, never ORM objects."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from webapp import delivery, digests
from webapp.mailer import MailerError

# Exponential backoff for temporary SMTP trouble: 30 s, 1 min, 2 min ... capped at 30 min.
MAX_RETRIES = 8


def _backoff(retries: int) -> int:
    return min(30 * 2**retries, 1800)


@shared_task(name="bulletin.dispatch_issue")
def dispatch_issue(issue_id: int) -> int:
    """Split an issue's pending deliveries into batches and queue one task per batch."""
    size = current_app.config["SEND_BATCH_SIZE"]
    digests.prepare_digests(issue_id)
    batches = 0
    for ids in delivery.pending_batches(issue_id, size):
        send_batch.delay(issue_id, ids)
        batches += 1
    delivery.finish_if_done(issue_id)
    return batches


@shared_task(bind=True, name="bulletin.send_batch", max_retries=MAX_RETRIES)
def send_batch(self, issue_id: int, delivery_ids: list[int]) -> dict:
    try:
        result = delivery.send_batch(issue_id, delivery_ids)
    except MailerError as exc:
        raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
    if result.retry_ids:
        send_batch.apply_async(
            (issue_id, result.retry_ids), countdown=_backoff(self.request.retries)
        )
    return {"sent": result.sent, "failed": result.failed, "unknown": result.unknown}
