"""The one way the web app and the CLI hand work to the workers (the Celery tasks in `tasks/`).

Call these only after the commit that asks for the work: a task must find what it is told
about, and rolled-back work must send nothing. Tasks take ids, never ORM objects.
"""

from __future__ import annotations

from tasks import imports, mail, readers, sending, webhooks


def dispatch_issue(issue_id: int) -> None:
    """Render the issue's digests and queue its due deliveries in batches."""
    sending.dispatch_issue.delay(issue_id)


def send_confirmation(subscriber_id: int) -> None:
    mail.send_confirmation.delay(subscriber_id)


def send_confirmations(subscriber_ids: list[int]) -> None:
    """Many confirmations, a task per CONFIRMATION_CHUNK readers (a CSV import's)."""
    mail.queue_confirmations(subscriber_ids)


def answer_sign_up(subscriber_id: int | None, email: str) -> None:
    """The web form's one task per sign-up: `email` is "confirmation", "preferences-link" or
    "" (nothing to send: a suppressed address, or one already emailed today)."""
    mail.answer_sign_up.delay(subscriber_id, email)


def send_preferences_link(subscriber_id: int) -> None:
    mail.send_preferences_link.delay(subscriber_id)


def send_test_issue(issue_id: int, topic_ids: list[int], locale: str, to_email: str) -> None:
    mail.send_test_issue.delay(issue_id, topic_ids, locale, to_email)


def check_subscriber_import(import_id: int) -> None:
    """The dry run of an uploaded readers CSV: its report, with nothing changed."""
    imports.check_subscriber_import.delay(import_id)


def run_subscriber_import(import_id: int) -> None:
    """The import of a checked readers CSV."""
    imports.run_subscriber_import.delay(import_id)


def send_review_request(issue_id: int, reviewer_email: str) -> None:
    """Tell a reviewer an issue waits for them (送审), with a test copy."""
    mail.send_review_request.delay(issue_id, reviewer_email)


def deliver_webhook(delivery_id: int) -> None:
    """POST one webhook delivery (its outbox row), retried with backoff."""
    webhooks.deliver_webhook.delay(delivery_id)


def run_bulk_change(change_id: int) -> None:
    """Carry out a confirmed bulk change to readers (webapp.bulk), a chunk at a time."""
    readers.run_bulk_change.delay(change_id)
