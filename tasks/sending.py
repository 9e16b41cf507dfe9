"""Thin Celery wrappers around `webapp.delivery` and `webapp.sweeper`; tasks take ids, never
ORM objects.

No task retries itself: a batch that cannot finish gives its rows back to the database with
a time to retry, and the periodic sweeper queues them again. Redis only carries work.
"""

from __future__ import annotations

from celery import shared_task

from webapp import delivery, sweeper


def enqueue_batch(issue_id: int, delivery_ids: list[int]) -> None:
    send_batch.delay(issue_id, delivery_ids)


@shared_task(name="bulletin.dispatch_issue")
def dispatch_issue(issue_id: int) -> int:
    """Render the issue's digests, then queue a batch task per SEND_BATCH_SIZE due rows."""
    return delivery.dispatch_issue(issue_id, enqueue_batch)


@shared_task(name="bulletin.send_batch")
def send_batch(issue_id: int, delivery_ids: list[int]) -> dict:
    result = delivery.send_batch(issue_id, delivery_ids)
    return {"sent": result.sent, "failed": result.failed, "unknown": result.unknown}


@shared_task(name="bulletin.sweep")
def sweep() -> dict:
    result = sweeper.sweep(enqueue_batch)
    return {
        "recovered": result.recovered,
        "published": result.published,
        "queued": result.queued,
        "skipped": result.skipped,
    }
