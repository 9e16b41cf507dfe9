"""The periodic repair (Celery beat, every SWEEP_SECONDS): settle the rows of workers that
died, from the journal; publish scheduled issues; queue rows that are due or whose task was
lost; finish issues with nothing left to send. See rules 4 to 6 in `delivery.py`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import redis as redis_lib
from flask import current_app
from sqlalchemy import select, update

from . import counters, publishing
from .delivery import (
    Enqueue,
    after_answers,
    dispatch_due,
    dispatch_issue,
    finish,
    give_back,
    held_by,
    start_send,
)
from .errors import describe
from .extensions import db, redis_client
from .journal import IN_FLIGHT, Answer, Journal
from .models import Delivery, DeliveryStatus, Issue, IssueStatus, Subscriber, utcnow
from .transactions import Step, commit_step, transaction

log = logging.getLogger(__name__)

SWEEP_LOCK = "bulletin:sweep"


@dataclass
class SweepResult:
    recovered: dict[str, int] = field(default_factory=dict)  # status -> rows taken back
    published: list[int] = field(default_factory=list)  # scheduled issues that came due
    queued: int = 0
    skipped: bool = False  # another sweep was running


def sweep(enqueue: Enqueue) -> SweepResult:
    """The periodic repair: take back dead workers' rows, publish scheduled issues, queue
    rows that are due or whose task was lost, and finish issues with nothing left to send.

    One at a time: while another sweep holds the Redis lock this one does nothing (the lock
    expires by itself if its holder dies). A sweep longer than SWEEP_SECONDS is logged.
    """
    config = current_app.config
    started = time.monotonic()
    lock = redis_client().lock(
        SWEEP_LOCK, timeout=max(10.0, 3 * config["SWEEP_SECONDS"]), blocking=False
    )
    try:
        if not lock.acquire():
            log.info("sweep: another sweep is running, this one is skipped")
            return SweepResult(skipped=True)
    except redis_lib.RedisError:
        lock = None  # no Redis, no lock: every step below is safe to run twice anyway
    try:
        result = _sweep(enqueue)
    finally:
        if lock is not None:
            try:
                lock.release()
            except redis_lib.RedisError:
                pass  # expired (a very long sweep) or Redis gone: it times out by itself
    elapsed = time.monotonic() - started
    if elapsed > config["SWEEP_SECONDS"]:
        log.warning(
            "sweep took %.1f s, longer than SWEEP_SECONDS (%s s): %s",
            elapsed,
            config["SWEEP_SECONDS"],
            result,
        )
    return result


def _sweep(enqueue: Enqueue) -> SweepResult:
    result = SweepResult()
    try:
        result.recovered = recover_expired()
    except redis_lib.RedisError as exc:
        # Without the journal a dead worker's rows cannot be told apart; wait for Redis.
        log.warning("sweep: journal unavailable, expired leases left for later: %s", exc)

    def hand_over(issue_id: int) -> None:
        result.queued += dispatch_issue(issue_id, enqueue)

    for issue_id in publishing.due_issues():
        try:
            with transaction():
                start_send(issue_id, hand_over)
            result.published.append(issue_id)
        except (publishing.NotApproved, publishing.IdentityIncomplete) as exc:
            log.warning("sweep: issue %s not published: %s", issue_id, exc)
            with transaction():
                publishing.refuse_due(issue_id, describe(exc))
        except publishing.PublishError:
            pass  # published by someone else meanwhile, or unscheduled: nothing to do
    sending = db.session.scalars(select(Issue.id).where(Issue.status == IssueStatus.SENDING))
    for issue_id in list(sending):
        result.queued += dispatch_due(issue_id, enqueue)
        finish(issue_id)
    with transaction():
        counters.fold()
    return result


def recover_expired() -> dict[str, int]:
    """Settle claimed rows whose lease ran out, from the journal (rule 4 in `delivery.py`).

    Each UPDATE re-checks, inside itself, that the row is still held by the claim that was
    read and that its lease is still out: between the SELECT and the UPDATE another sweep
    may have given the row back and a new batch claimed it, or its worker may have renewed.
    Only the rows actually settled lose their journal entries.
    """
    now = utcnow()
    expired = db.session.execute(
        select(
            Delivery.id,
            Delivery.issue_id,
            Delivery.claim_token,
            Delivery.subscriber_id,
            Subscriber.email,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_expires_at < now)
        .order_by(Delivery.issue_id, Delivery.id)
        .limit(10000)
    ).all()
    counts: dict[str, int] = {}
    by_claim: dict[tuple[int, str | None], list] = {}
    for row in expired:
        by_claim.setdefault((row.issue_id, row.claim_token), []).append(row)
    for (issue_id, token), rows in by_claim.items():
        journal = Journal(issue_id, token)
        entries = journal.read([r.id for r in rows])
        answers, never_sent = [], []
        for row in rows:
            entry = entries.get(row.id)
            if entry is None:
                never_sent.append(row.id)
                continue
            if entry == IN_FLIGHT:
                status, reply, message_id, hard = (
                    DeliveryStatus.UNKNOWN.value,
                    "worker lost while this message was being sent; not resent",
                    "",
                    False,
                )
            else:
                status, reply, message_id, hard = json.loads(entry)
            answers.append(
                Answer(row.id, row.subscriber_id, row.email, DeliveryStatus(status), reply,
                       message_id, hard_bounce=hard)
            )  # fmt: skip
        settled: list[int] = []
        for answer in answers:
            changed = db.session.execute(
                update(Delivery)
                .where(
                    Delivery.id == answer.delivery_id,
                    held_by(token),
                    Delivery.lease_expires_at < now,
                )
                .values(
                    status=answer.status,
                    smtp_reply=answer.reply[:1000],
                    message_id=answer.message_id,
                    sent_at=now if answer.status == DeliveryStatus.SENT else None,
                    lease_expires_at=None,
                    # A retry found in the journal is due now: its backoff time was not kept.
                    next_attempt_at=None,
                    queued_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount:
                settled.append(answer.delivery_id)
                counts[answer.status.value] = counts.get(answer.status.value, 0) + 1
        after_answers([a for a in answers if a.delivery_id in set(settled)])
        if never_sent:
            given = give_back(never_sent, token, expired_before=now)
            settled += given
            if given:
                counts["pending"] = counts.get("pending", 0) + len(given)
        commit_step(Step.SETTLED)
        journal.forget(settled)
    return counts
