"""Thin Celery wrapper around `webapp.readership`: the counters' flush, run by beat."""

from __future__ import annotations

from celery import shared_task

from webapp import readership


@shared_task(name="bulletin.flush_readership")
def flush_readership() -> int:
    """Move click and page-view counters from Redis into the database."""
    return readership.flush()
