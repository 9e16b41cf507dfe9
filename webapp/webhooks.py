"""Webhooks: admins register URLs for events; each event is written as an outbox row in the
same transaction as the change that caused it, and a Celery task posts it after the commit.

A change that rolls back tells nobody, and the request or the send that caused an event
never waits for a receiver: `emit` only adds rows and hands their ids to `after_commit`.
Every POST is signed (see `signature`) and its answer logged on the row; failures are
retried with a growing delay by the task (tasks/webhooks.py) until WEBHOOK_RETRIES.

The signature header, `Bulletin-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
HMAC-SHA256 with the webhook's secret over the bytes `<t>.<body>`: a receiver recomputes it
over the raw body, compares in constant time, and refuses an old `t` (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from flask import current_app
from flask_babel import lazy_gettext
from sqlalchemy import select

from . import audit
from .errors import BulletinError
from .extensions import db
from .models import Webhook, WebhookDelivery, WebhookDeliveryStatus, utcnow
from .transactions import after_commit, rollback

EVENTS = {
    "subscriber.confirmed": lazy_gettext("读者确认订阅"),
    "subscriber.unsubscribed": lazy_gettext("读者退订"),
    "subscriber.bounced": lazy_gettext("退信（地址无效）"),
    "subscriber.complained": lazy_gettext("读者投诉（标为垃圾邮件）"),
    "issue.sent": lazy_gettext("一期开始发送（已发布）"),
    "issue.paused": lazy_gettext("发送暂停"),
    "issue.finished": lazy_gettext("一期发送完毕"),
}
SIGNATURE_HEADER = "Bulletin-Signature"
TIMEOUT_SECONDS = 10
ANSWER_KEPT = 1000


class WebhookError(BulletinError):
    """A webhook we cannot register or change; the code says why."""


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None  # the receiver's HTTP status; None when there was no answer
    answer: str  # the start of its body, or why there was none


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def register(url: str, events: list[str], *, created_by: str) -> Webhook:
    """A new webhook for `events` (flushed, audited); its secret is on the returned row."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise WebhookError("webhook-url", field="url")
    if _private_host(parts.hostname):
        raise WebhookError("webhook-private-address", field="url", host=parts.hostname)
    chosen = [event for event in EVENTS if event in set(events)]
    if not chosen:
        raise WebhookError("webhook-events-none", field="events")
    webhook = Webhook(
        url=url,
        events=" ".join(chosen),
        secret="whsec_" + secrets.token_urlsafe(32),
        created_by=created_by,
    )
    db.session.add(webhook)
    db.session.flush()
    audit.record("webhook-create", detail=f"#{webhook.id} {url} {webhook.events}")
    return webhook


def remove(webhook_id: int) -> None:
    """Delete a webhook and its log (flushed, audited)."""
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        raise WebhookError("webhook-missing", id=webhook_id)
    audit.record("webhook-delete", detail=f"#{webhook.id} {webhook.url}")
    db.session.delete(webhook)
    db.session.flush()


def webhooks() -> list[Webhook]:
    return list(db.session.scalars(select(Webhook).order_by(Webhook.id)))


def recent_deliveries(webhook_id: int, limit: int = 20) -> list[WebhookDelivery]:
    return list(
        db.session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


def emit(event: str, data: dict) -> None:
    """Tell every webhook registered for `event`, once the caller's transaction commits:
    an outbox row per webhook now (flushed), its task queued after the commit."""
    if event not in EVENTS:
        raise KeyError(f"no webhook event {event!r}: add it to EVENTS")
    hooks = db.session.scalars(select(Webhook).where(Webhook.active.is_(True))).all()
    rows = []
    for webhook in hooks:
        if event not in webhook.events.split():
            continue
        row = WebhookDelivery(webhook_id=webhook.id, event=event, payload="")
        db.session.add(row)
        rows.append(row)
    if not rows:
        return
    db.session.flush()
    now = utcnow().isoformat()
    for row in rows:
        body = {"id": row.id, "event": event, "created_at": now, "data": data}
        row.payload = json.dumps(body, ensure_ascii=False, sort_keys=True)
        after_commit(lambda row_id=row.id: _queue(row_id))
    db.session.flush()


def _queue(delivery_id: int) -> None:
    from . import queue  # queue imports the tasks, which import this module

    queue.deliver_webhook(delivery_id)


def subscriber_data(subscriber) -> dict:
    return {
        "subscriber": {
            "id": subscriber.id,
            "email": subscriber.email,
            "status": subscriber.status.value,
            "topics": [topic.id for topic in subscriber.topics],
        }
    }


def _private_host(host: str) -> bool:
    """Whether `host` names (or resolves to) an address that is not public, when such
    receivers are refused (WEBHOOK_ALLOW_PRIVATE off, as in production). A name that does
    not resolve is not refused here: the delivery will say so."""
    if current_app.config["WEBHOOK_ALLOW_PRIVATE"]:
        return False
    try:
        answers = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False
    return any(not ipaddress.ip_address(answer[4][0]).is_global for answer in answers)


def post(delivery_id: int) -> Outcome | None:
    """POST one pending delivery, signed; no database writes, so no transaction is held
    while the receiver thinks. None when the row is gone or no longer pending."""
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None or row.status != WebhookDeliveryStatus.PENDING:
        return None
    webhook = db.session.get(Webhook, row.webhook_id)
    body = row.payload.encode("utf-8")
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Bulletin-Webhooks/1",
        "Bulletin-Event": row.event,
        "Bulletin-Delivery": str(row.id),
        SIGNATURE_HEADER: f"t={timestamp},v1={signature(webhook.secret, timestamp, body)}",
    }
    url = webhook.url
    rollback()  # end the read before waiting on the network
    # Checked again at each delivery: a name registered as public may point inward later.
    if _private_host(urlsplit(url).hostname or ""):
        return Outcome(False, None, "refused: the receiver's address is not public")
    try:
        answer = requests.post(
            url, data=body, headers=headers, timeout=TIMEOUT_SECONDS,
            allow_redirects=False,
        )  # fmt: skip
    except requests.RequestException as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:ANSWER_KEPT])
    return Outcome(200 <= answer.status_code < 300, answer.status_code, answer.text[:ANSWER_KEPT])


def record(delivery_id: int, outcome: Outcome, *, final: bool = False) -> None:
    """Log an attempt's answer on the row (flushed); `final`: no more tries after a failure."""
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None:
        return
    now = utcnow()
    row.attempts += 1
    row.last_attempt_at = now
    row.response_status = outcome.status
    row.response_body = outcome.answer
    if outcome.delivered:
        row.status = WebhookDeliveryStatus.DELIVERED
        row.delivered_at = now
    elif final:
        row.status = WebhookDeliveryStatus.FAILED
    db.session.flush()
