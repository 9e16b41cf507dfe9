"""Readers CSV imports: the dry run and the import itself, each a task per upload."""

from __future__ import annotations

from celery import shared_task

from webapp import subscriber_imports
from webapp.transactions import transaction

from . import mail


@shared_task(name="bulletin.check_subscriber_import")
def check_subscriber_import(import_id: int) -> None:
    _run(import_id, dry_run=True)


@shared_task(name="bulletin.run_subscriber_import")
def run_subscriber_import(import_id: int) -> None:
    _run(import_id, dry_run=False)


def _run(import_id: int, *, dry_run: bool) -> None:
    try:
        with transaction():
            subscriber_imports.run(
                import_id, dry_run=dry_run, send_confirmations=mail.queue_confirmations
            )
    except subscriber_imports.ImportSuperseded:
        return  # another run took the job over, and finishes it; this one's chunk is undone
    except Exception:
        with transaction():
            subscriber_imports.mark_failed(import_id)
        raise
