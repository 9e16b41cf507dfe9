"""Posting webhook deliveries, retried with a growing delay (webapp/webhooks.py)."""

from __future__ import annotations

from celery import shared_task
from flask import current_app

from webapp import webhooks
from webapp.transactions import transaction


@shared_task(bind=True, name="bulletin.deliver_webhook", max_retries=8)
def deliver_webhook(self, delivery_id: int) -> None:
    retries = current_app.config["WEBHOOK_RETRIES"]
    outcome = webhooks.post(delivery_id)
    if outcome is None:
        return
    final = self.request.retries >= retries
    with transaction():
        webhooks.record(delivery_id, outcome, final=final)
    if not outcome.delivered and not final:
        delay = current_app.config["WEBHOOK_RETRY_SECONDS"] * 2**self.request.retries
        raise self.retry(countdown=delay, max_retries=retries)
