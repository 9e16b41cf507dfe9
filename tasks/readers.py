"""Thin Celery wrapper around `webapp.bulk`: a large bulk change to readers."""

from __future__ import annotations

from celery import shared_task

from webapp import bulk


@shared_task(name="bulletin.run_bulk_change", acks_late=True)
def run_bulk_change(change_id: int) -> None:
    """Carry out a confirmed bulk change; a retry carries on from its last chunk."""
    try:
        bulk.run(change_id)
    except Exception:
        bulk.fail(change_id)
        raise
