"""Send an issue: queue batches, claim them, send over one connection, record; and sweep.

The never-twice rules, in order:

1. The database is the ledger: one `Delivery` row per (issue, reader), unique, planned
   when the issue is published (`publishing.py`). Redis only carries work.
2. A worker *claims* its batch in one statement (pending -> sending, with a lease and a
   fresh claim token); a row is claimed once. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets
   concurrent claimers pass by. Every later change to a claimed row (a flush of answers, a
   renewal, a give-back, the sweeper's settlement) is conditional on that token, so a late
   sweep or a worker that lost its lease can no longer touch a row claimed again since.
3. Before a message goes on the wire its row is marked "in flight" in a Redis journal; the
   server's answer replaces the mark (written with the next message's mark, see `Journal`).
   Answers reach the database in bulk every SEND_FLUSH_EVERY messages. The lease of the
   rest of the batch is renewed every third of the lease, checked before each message and
   while waiting for the rate limit; a worker whose renewal finds its rows taken stops
   without sending another message.
4. A row whose lease ran out belongs to a worker that died (or stalled past it: then the
   token stops it). The sweeper reads the journal:
   an answer is recorded as given; an "in flight" mark becomes `unknown` (the message may
   have arrived: it is never resent automatically); no mark means it never left, and it
   goes back to pending.
5. Temporary failures go back to pending with a time to retry (exponential backoff). The
   sweeper queues rows that are due, and rows whose task was lost (a Redis restart).
6. One sweep at a time: a short Redis lock skips a sweep while another runs. The lock only
   saves work: with the tokens and the lease re-checked inside each UPDATE, two sweeps at
   once would still not take back anything that is not theirs to take.

A redelivered or duplicated task finds nothing to claim, so running any task twice is a
no-op. A send starts with `start_send`; tasks (`tasks/sending.py`) are thin: they call
`dispatch_issue`, `send_batch` and `sweeper.sweep`. Mid-work commits are the named steps of
`transactions.Step`. The journal and the rate limit live in `journal.py`, the sweeper (rules 4
to 6) in `sweeper.py`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis as redis_lib
from flask import current_app
from sqlalchemy import select, update

from . import publishing, subscriptions
from .bounces import verp_address
from .digests import Recipient, compose, prepare_digests
from .errors import stored_reason
from .extensions import db, redis_client
from .issues import issue_topic_ids
from .journal import Answer, Journal, JournalError, rate_limit
from .mailer import AddressError, MailerError, Outcome, SendResult
from .models import (
    Delivery,
    DeliveryStatus,
    EventSource,
    Issue,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
    subscriber_topics,
    utcnow,
)
from .smtp import smtp_session
from .transactions import Step, after_commit, commit_step, rollback

log = logging.getLogger(__name__)

Enqueue = Callable[[int, list[int]], None]  # (issue id, delivery ids): queue a batch task


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    skipped: int = 0
    retrying: int = 0
    released: int = 0  # claimed but not tried (paused, cancelled, SMTP unreachable)
    stopped: str = ""  # why the batch stopped early, if it did
    stop_reason: str = ""  # the same, as a stored reason (errors.STORED) for staff to read


class LeaseLost(RuntimeError):
    """A renewal found rows of this claim taken back: they are someone else's now."""


# --- starting ------------------------------------------------------------------------------


def start_send(issue_id: int, hand_over: Callable[[int], object]) -> int:
    """Start sending an issue now, the one way the staff page, the CLI and the sweeper do it.

    Plans one delivery per reader in the caller's transaction (`publishing.publish_issue`)
    and, once that transaction commits, calls `hand_over(issue_id)`: queue the dispatch task
    (or, in the sweeper, run `dispatch_issue` itself). Returns how many readers are planned;
    raises PublishError when the issue cannot be published in its state.
    """
    planned = publishing.publish_issue(issue_id)
    after_commit(lambda: hand_over(issue_id))
    return planned


def dispatch_issue(issue_id: int, enqueue: Enqueue) -> int:
    """What a started (or resumed, or resent) send hands over: render and store the digests
    its pending rows need, queue a batch task per SEND_BATCH_SIZE due rows, and mark the
    issue sent if nothing is left. Returns how many rows were queued."""
    prepare_digests(issue_id)
    commit_step(Step.RENDERED)
    queued = dispatch_due(issue_id, enqueue)
    finish(issue_id)
    return queued


def finish(issue_id: int) -> None:
    """Mark the issue sent if none of its rows is pending or in flight."""
    if publishing.finish_if_done(issue_id):
        commit_step(Step.FINISHED)


# --- queueing ------------------------------------------------------------------------------


def dispatch_due(issue_id: int, enqueue: Enqueue, *, size: int | None = None) -> int:
    """Queue a batch task for every pending row that is due and not already queued.

    Rows are read in keyset pages, so memory stays flat. Each batch is marked `queued_at`
    and committed before its task is queued; a task lost after that (Redis restarted) is
    noticed by the sweeper after SEND_REQUEUE_SECONDS. Returns how many rows were queued.
    """
    config = current_app.config
    size = size or config["SEND_BATCH_SIZE"]
    now = utcnow()
    stale = now - timedelta(seconds=config["SEND_REQUEUE_SECONDS"])
    queued, last_id = 0, 0
    while True:
        ids = list(db.session.scalars(due_rows_query(issue_id, last_id, now, stale, size)))
        if not ids:
            return queued
        db.session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(queued_at=now)
            .execution_options(synchronize_session=False)
        )
        commit_step(Step.QUEUED)
        enqueue(issue_id, ids)
        queued += len(ids)
        last_id = ids[-1]


def due_rows_query(issue_id: int, after_id: int, now: datetime, stale: datetime, size: int):
    """The next page of pending rows that are due and not queued (or queued long ago).

    The (issue_id, status, id) index hands them over in id order. Right after planning the
    table has no statistics for the new rows, and with only (issue_id, status) PostgreSQL
    sorted every pending row for each page: 38 ms a page at 300,000 readers, quadratic work
    over a send to 1,000,000.
    """
    return (
        select(Delivery.id)
        .where(
            Delivery.issue_id == issue_id,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.id > after_id,
            (Delivery.next_attempt_at.is_(None)) | (Delivery.next_attempt_at <= now),
            (Delivery.queued_at.is_(None)) | (Delivery.queued_at < stale),
        )
        .order_by(Delivery.id)
        .limit(size)
    )


# --- sending -------------------------------------------------------------------------------


@dataclass
class Claim:
    """Rows taken by one claim, its fencing token, and when (monotonic) its lease began."""

    token: str
    delivery_ids: list[int]
    started: float


def claim(issue_id: int, delivery_ids: list[int]) -> Claim:
    """Take the rows among `delivery_ids` that are still pending: pending -> sending, with a
    lease and a fresh claim token."""
    started = time.monotonic()  # the lease is counted from before the statement
    now = utcnow()
    lease = timedelta(seconds=current_app.config["SEND_LEASE_SECONDS"])
    token = uuid.uuid4().hex
    statement = claim_statement(issue_id, delivery_ids, now, now + lease, token)
    claimed = db.session.scalars(statement).all()
    commit_step(Step.CLAIMED)
    return Claim(token, sorted(claimed), started)


def claim_statement(
    issue_id: int, delivery_ids: list[int], now: datetime, lease_end: datetime, token: str = ""
):
    """One statement. On PostgreSQL the inner SELECT locks with SKIP LOCKED, so two workers
    handed the same ids (a redelivered task) never wait for each other and never share a row.
    """
    free = (
        select(Delivery.id)
        .where(
            Delivery.id.in_(delivery_ids),
            Delivery.issue_id == issue_id,
            Delivery.status == DeliveryStatus.PENDING,
        )
        .with_for_update(skip_locked=True)
    )
    return (
        update(Delivery)
        .where(Delivery.id.in_(free.scalar_subquery()), Delivery.status == DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.SENDING,
            lease_expires_at=lease_end,
            claim_token=token,
            attempts=Delivery.attempts + 1,
            updated_at=now,
        )
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )


def send_batch(issue_id: int, delivery_ids: list[int]) -> BatchResult:
    """Claim these rows, send each over one SMTP connection, record every answer.

    Safe to run twice with the same ids: rows already claimed or final are not touched.
    """
    status = db.session.scalar(select(Issue.status).where(Issue.id == issue_id))
    if status != IssueStatus.SENDING:
        # Paused or cancelled since these were queued: let a resume queue them again.
        _unqueue(delivery_ids)
        return BatchResult(stopped=f"issue is {status}")
    claimed = claim(issue_id, delivery_ids)
    if not claimed.delivery_ids:
        return BatchResult()
    return _Batch(issue_id, claimed).run()


STOP_DAYS = 30


def _stop_key(issue_id: int) -> str:
    return f"bulletin:last-stop:{issue_id}"


def _remember_stop(issue_id: int, reason: str) -> None:
    """Kept in Redis, not the issue row: a batch stops because something is down, and the
    database may be what is."""
    try:
        redis_client().set(_stop_key(issue_id), reason, ex=STOP_DAYS * 86400)
    except redis_lib.RedisError:
        log.warning("could not note the stop of issue %s's batch in Redis", issue_id)


def last_stop(issue_id: int) -> str:
    """The stored reason the issue's last stopped batch stopped, or ''."""
    try:
        value = redis_client().get(_stop_key(issue_id))
    except redis_lib.RedisError:
        return ""
    return value.decode() if isinstance(value, bytes) else (value or "")


def held_by(token: str | None):
    """The condition on every change to a claimed row: still claimed, and by this claim."""
    return (Delivery.status == DeliveryStatus.SENDING) & Delivery.claim_token.is_not_distinct_from(
        token
    )


class _Batch:
    def __init__(self, issue_id: int, claim_: Claim):
        config = current_app.config
        self.issue_id = issue_id
        self.token = claim_.token
        claimed = claim_.delivery_ids
        self.readers = _recipients(claimed)
        self.chosen = _chosen_topics([r.subscriber_id for r in self.readers])
        self.issue_topics = issue_topic_ids(issue_id)
        rows = db.session.execute(
            select(Delivery.id, Delivery.attempts, Delivery.created_at).where(
                Delivery.id.in_(claimed)
            )
        ).all()
        self.attempts = {row.id: row.attempts for row in rows}
        self.planned = {row.id: row.created_at for row in rows}
        # A dict as an ordered set: each answer takes its row out in O(1).
        self.untried = dict.fromkeys(r.delivery_id for r in self.readers)
        self.answers: list[Answer] = []
        self.result = BatchResult()
        self.journal = Journal(issue_id, self.token)
        self.rate = rate_limit()
        self.flush_every = config["SEND_FLUSH_EVERY"]
        # The lease is renewed every third of it (with a flush), so that before any message
        # two thirds of it remain: the margin for one slow SMTP transaction. It is counted
        # from before the claim or renewal statement, the worker's safe side.
        self.flush_seconds = config["SEND_LEASE_SECONDS"] / 3
        self.last_flush = time.monotonic()
        self.last_renewal = claim_.started
        self.retry_delay: float | None = None  # set when the server is unavailable

    def run(self) -> BatchResult:
        session = smtp_session()
        try:
            for reader in self.readers:
                if self._due_to_flush() and not self._flush_and_check():
                    break
                topic_ids = frozenset(self.chosen.get(reader.subscriber_id, set()))
                topic_ids &= self.issue_topics
                # Re-checked at send time: the reader may have left since the issue was planned.
                if not reader.active or not topic_ids:
                    self._answer(reader, DeliveryStatus.SKIPPED, stored_reason("reader-left"))
                    continue
                self.rate.wait(before_sleeping=self._while_waiting)
                try:
                    message_id, data = compose(self.issue_id, reader, topic_ids)
                except AddressError as exc:  # a row from before sign-up refused such addresses
                    self._answer(reader, DeliveryStatus.FAILED, f"not sent: {exc}")
                    continue
                session.ensure_open()
                # Never on a lease that may have run out while we waited, composed or
                # connected: renew first if it is due (LeaseLost if the rows were taken).
                self._keep_lease()
                self.journal.on_the_wire(reader.delivery_id)
                outcome = session.send(_envelope_from(reader.delivery_id), reader.email, data)
                if not self._take(reader, outcome, message_id):
                    break
        except MailerError as exc:
            self.result.stopped = str(exc)
            self.result.stop_reason = stored_reason("smtp-unreachable", str(exc))
            self.retry_delay = 0.0  # from attempts: the server could not be reached
        except JournalError as exc:
            self.result.stopped = f"Redis journal unavailable: {exc}"
            self.result.stop_reason = stored_reason("journal-unavailable", str(exc))
        except LeaseLost as exc:
            self.result.stopped = str(exc)
            self.result.stop_reason = stored_reason("lease-lost", str(exc))
        finally:
            session.close()
            self._flush(renew=False)
            self._release()
        finish(self.issue_id)
        if self.result.stopped:
            # Rows given back are retried later, so nobody would otherwise see why a send
            # is slow or not moving: the log and the sending page say so.
            log.warning("batch of issue %s stopped: %s", self.issue_id, self.result.stopped)
            if self.result.stop_reason:
                _remember_stop(self.issue_id, self.result.stop_reason)
        return self.result

    def _take(self, reader: Recipient, outcome: SendResult, message_id: str) -> bool:
        """Turn the server's answer into an Answer; False when the batch must stop."""
        if outcome.outcome == Outcome.SENT:
            self._answer(reader, DeliveryStatus.SENT, outcome.reply, message_id)
        elif outcome.outcome == Outcome.AMBIGUOUS:
            self._answer(reader, DeliveryStatus.UNKNOWN, outcome.reply, message_id)
        elif outcome.outcome == Outcome.PERMANENT:
            self._answer(reader, DeliveryStatus.FAILED, outcome.reply, hard_bounce=True)
        elif outcome.outcome == Outcome.POLICY:
            # The server refuses *us* (5.7.x): nothing is wrong with this reader. Stop the
            # issue so staff can fix the cause; this row, still untried, is given back.
            self._pause(stored_reason("smtp-refused", outcome.reply))
            return False
        else:
            self._retry(reader, outcome.reply)
            if outcome.code in (0, 421):
                # The connection is gone (or the server is closing it): so are the others'
                # chances on it. They are given back, to be retried after the same delay.
                self.result.stopped = outcome.reply
                self.result.stop_reason = stored_reason("smtp-connection-lost", outcome.reply)
                self.retry_delay = 0.0
                return False
        return True

    def _answer(self, reader: Recipient, status: DeliveryStatus, reply: str, message_id="", *,
                next_attempt_at=None, hard_bounce=False) -> None:  # fmt: skip
        answer = Answer(
            reader.delivery_id,
            reader.subscriber_id,
            reader.email,
            status,
            reply,
            message_id,
            next_attempt_at,
            hard_bounce,
        )
        del self.untried[reader.delivery_id]
        self.answers.append(answer)
        if status != DeliveryStatus.SKIPPED:
            self.journal.answered(answer)
        counter = {
            DeliveryStatus.SENT: "sent",
            DeliveryStatus.FAILED: "failed",
            DeliveryStatus.UNKNOWN: "unknown",
            DeliveryStatus.SKIPPED: "skipped",
            DeliveryStatus.PENDING: "retrying",
        }[status]
        setattr(self.result, counter, getattr(self.result, counter) + 1)

    def _retry(self, reader: Recipient, reply: str) -> None:
        attempts = self.attempts[reader.delivery_id]
        when = _next_attempt(attempts, self.planned[reader.delivery_id])
        if when is None:
            reply = f"gave up after {attempts} attempts: {reply}"
            self._answer(reader, DeliveryStatus.FAILED, reply)
        else:
            self._answer(reader, DeliveryStatus.PENDING, reply, next_attempt_at=when)

    def _pause(self, reason: str) -> None:
        try:
            publishing.pause_issue(self.issue_id, reason)
            commit_step(Step.PAUSED)
        except publishing.PublishError:
            rollback()
        self.result.stopped = reason

    def _due_to_flush(self) -> bool:
        return (
            len(self.answers) >= self.flush_every
            or time.monotonic() - self.last_flush >= self.flush_seconds
        )

    def _keep_lease(self) -> None:
        if time.monotonic() - self.last_renewal >= self.flush_seconds:
            self._flush()

    def _while_waiting(self) -> None:
        """Before each sleep of the rate limit: save the journal, keep the lease."""
        self.journal.save()
        self._keep_lease()

    def _flush_and_check(self) -> bool:
        self._flush()
        status = db.session.scalar(select(Issue.status).where(Issue.id == self.issue_id))
        if status != IssueStatus.SENDING:
            self.result.stopped = f"issue is {status}"
            return False
        return True

    def _flush(self, *, renew: bool = True) -> None:
        """Write the answers so far in bulk, renew the lease of the rest when due, clear the
        journal. Raises LeaseLost (after committing) when the renewal finds rows taken."""
        started = self.last_flush = time.monotonic()  # the renewed lease counts from here
        answers, self.answers = self.answers, []
        now = utcnow()
        if answers:
            rows = [
                {
                    "id": a.delivery_id,
                    "status": a.status,
                    "smtp_reply": a.reply[:1000],
                    "message_id": a.message_id,
                    "sent_at": now if a.status == DeliveryStatus.SENT else None,
                    "lease_expires_at": None,
                    "next_attempt_at": a.next_attempt_at,
                    "queued_at": None,
                    "updated_at": now,
                }
                for a in answers
            ]
            # Only rows still ours: a row the sweeper took back (and maybe someone else
            # claimed since) is not overwritten.
            db.session.execute(
                update(Delivery)
                .where(held_by(self.token))
                .execution_options(synchronize_session=None),
                rows,
            )
            after_answers(answers)
        # Renewing touches every untried row, so it follows the clock, not each flush.
        renewal = None
        due = time.monotonic() - self.last_renewal >= self.flush_seconds
        if renew and self.untried and due:
            lease = timedelta(seconds=current_app.config["SEND_LEASE_SECONDS"])
            renewal = db.session.execute(
                update(Delivery)
                .where(Delivery.id.in_(list(self.untried)), held_by(self.token))
                .values(lease_expires_at=now + lease)
                .execution_options(synchronize_session=False)
            )
        commit_step(Step.FLUSHED)
        # Only our own claim's entries: the sweeper settles what it took from the journal.
        self.journal.forget([a.delivery_id for a in answers])
        if renewal is not None:
            if renewal.rowcount != len(self.untried):
                taken = len(self.untried) - renewal.rowcount
                raise LeaseLost(f"lease lost: {taken} rows of this batch were taken back")
            self.last_renewal = started

    def _release(self) -> None:
        """Give back the rows claimed but never tried (they lose the attempt they were
        charged); after a connection failure they wait like a retry."""
        if not self.untried:
            return
        when = None
        if self.retry_delay is not None:
            attempts = max(self.attempts[i] for i in self.untried)
            when = _next_attempt(attempts, None) or utcnow() + timedelta(hours=1)
        give_back(list(self.untried), self.token, next_attempt_at=when)
        commit_step(Step.RELEASED)
        # A mark left by a connection that failed before the message went out.
        self.journal.forget(list(self.untried))
        self.result.released = len(self.untried)
        self.untried = {}


def give_back(
    delivery_ids: list[int],
    token: str | None,
    *,
    expired_before: datetime | None = None,
    next_attempt_at: datetime | None = None,
) -> list[int]:
    """Claimed rows that never went out: pending again, without the attempt they were
    charged when claimed. Only rows still held by the claim `token` (and, for the sweeper,
    only while their lease is still out: `expired_before`). Returns the ids given back."""
    statement = update(Delivery).where(Delivery.id.in_(delivery_ids), held_by(token))
    if expired_before is not None:
        statement = statement.where(Delivery.lease_expires_at < expired_before)
    given = db.session.scalars(
        statement.values(
            status=DeliveryStatus.PENDING,
            attempts=Delivery.attempts - 1,
            lease_expires_at=None,
            claim_token=None,
            queued_at=None,
            next_attempt_at=next_attempt_at,
            updated_at=utcnow(),
        )
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    return list(given)


def after_answers(answers: list[Answer]) -> None:
    """A hard bounce at send time suppresses the address. (A 250 from our relay says
    nothing about the mailbox, so it does not clear soft bounces reported later.)"""
    for answer in answers:
        if answer.hard_bounce:
            subscriptions.suppress(
                answer.email, SuppressionReason.HARD_BOUNCE, source=EventSource.BOUNCE
            )


def _next_attempt(attempts: int, planned: datetime | None) -> datetime | None:
    """When to try again after `attempts` tries, or None past the attempts or the deadline."""
    config = current_app.config
    if attempts >= config["SEND_MAX_ATTEMPTS"]:
        return None
    if planned is not None:
        if utcnow() - planned > timedelta(hours=config["SEND_DEADLINE_HOURS"]):
            return None
    delay = min(config["SEND_RETRY_BASE"] * 2 ** (attempts - 1), 6 * 3600)
    return utcnow() + timedelta(seconds=delay)


def _envelope_from(delivery_id: int) -> str:
    """The return path: a signed VERP address when bounces are processed, else MAIL_FROM."""
    if current_app.config["BOUNCE_DOMAIN"]:
        return verp_address(delivery_id)
    return current_app.config["MAIL_FROM_ADDRESS"]


def _unqueue(delivery_ids: list[int]) -> None:
    db.session.execute(
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.PENDING)
        .values(queued_at=None)
        .execution_options(synchronize_session=False)
    )
    commit_step(Step.UNQUEUED)


def _recipients(delivery_ids: list[int]) -> list[Recipient]:
    rows = db.session.execute(
        select(
            Delivery.id,
            Subscriber.id,
            Subscriber.email,
            Subscriber.name,
            Subscriber.locale,
            Subscriber.status,
            Subscriber.link_key,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id.in_(delivery_ids))
        .order_by(Delivery.id)
    ).all()
    return [
        Recipient(d, s, email, name, locale, status == SubscriberStatus.ACTIVE, key)
        for d, s, email, name, locale, status, key in rows
    ]


def _chosen_topics(subscriber_ids: list[int]) -> dict[int, set[int]]:
    chosen: dict[int, set[int]] = {}
    rows = db.session.execute(
        select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
            subscriber_topics.c.subscriber_id.in_(subscriber_ids)
        )
    )
    for subscriber_id, topic_id in rows:
        chosen.setdefault(subscriber_id, set()).add(topic_id)
    return chosen
