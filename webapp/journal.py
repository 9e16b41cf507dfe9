"""The send journal and the send rate, both in Redis.

The journal says, for each message of a claimed batch, whether it went on the wire and what
the server answered, so that the sweeper can settle the rows of a worker that died (see the
never-twice rules in `delivery.py`). The rate limit is SEND_RATE, shared by every worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis as redis_lib
from flask import current_app
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .extensions import redis_client
from .models import DeliveryStatus

IN_FLIGHT = "?"
JOURNAL_DAYS = 7


@dataclass
class Answer:
    """What happened to one row, to be written in the next bulk flush."""

    delivery_id: int
    subscriber_id: int
    email: str
    status: DeliveryStatus
    reply: str
    message_id: str = ""
    next_attempt_at: datetime | None = None
    hard_bounce: bool = False

    def journal_entry(self) -> str:
        return json.dumps(
            [self.status.value, self.reply[:500], self.message_id, self.hard_bounce],
            ensure_ascii=False,
        )


class JournalError(RuntimeError):
    """Redis cannot take the journal: stop sending, since a crash could no longer be told
    apart from a success."""


class Journal:
    """Per issue, in a Redis hash: "delivery id:claim token" -> "?" (on the wire) or the
    server's answer. The token keeps each claim's entries apart, so clearing one claim's
    entries never erases those of a later claim of the same rows.

    One round trip per message: an answer is written together with the next message's mark
    (or before any pause, or at the end of the batch when the database takes it). A worker
    that dies in between leaves that answer's row marked "?", so it ends `unknown`: a
    message that did arrive is reported as maybe arrived, and never sent again.
    """

    def __init__(self, issue_id: int, token: str | None):
        self.redis = redis_client()
        self.key = f"bulletin:journal:{issue_id}"
        self.token = token
        self._unwritten: dict[str, str] = {}
        self._expires = False

    def _field(self, delivery_id: int) -> str:
        # Rows claimed before tokens existed (NULL) keep the old field, the bare id.
        return f"{delivery_id}:{self.token}" if self.token else str(delivery_id)

    def on_the_wire(self, delivery_id: int) -> None:
        self._unwritten[self._field(delivery_id)] = IN_FLIGHT
        self.save()

    def answered(self, answer: Answer) -> None:
        self._unwritten[self._field(answer.delivery_id)] = answer.journal_entry()

    def save(self) -> None:
        """Write the answers kept so far (and a mark, from `on_the_wire`)."""
        if not self._unwritten:
            return
        try:
            if self._expires:
                self.redis.hset(self.key, mapping=self._unwritten)
            else:
                pipe = self.redis.pipeline(transaction=False)
                pipe.hset(self.key, mapping=self._unwritten)
                pipe.expire(self.key, JOURNAL_DAYS * 86400)
                pipe.execute()
                self._expires = True
        except redis_lib.RedisError as exc:
            raise JournalError(str(exc)) from exc
        self._unwritten = {}

    def forget(self, delivery_ids: list[int]) -> None:
        """The database has these rows' answers now: drop them here."""
        if delivery_ids:
            fields = [self._field(i) for i in delivery_ids]
            for name in fields:
                self._unwritten.pop(name, None)
            self._expires = False  # renewed with the next write, in case Redis lost the key
            try:
                self.redis.hdel(self.key, *fields)
            except redis_lib.RedisError:
                pass  # only tidiness: the rows are final in the database; the key expires

    def read(self, delivery_ids: list[int]) -> dict[int, str]:
        values = self.redis.hmget(self.key, [self._field(i) for i in delivery_ids])
        return {i: v.decode() for i, v in zip(delivery_ids, values, strict=True) if v is not None}


class SendRate:
    """The SEND_RATE budget, shared by every worker through Redis (0: no limit)."""

    def __init__(self, per_second: float):
        self.limiter = None
        if per_second > 0:
            storage = storage_from_string(current_app.config["REDIS_URL"])
            self.limiter = FixedWindowRateLimiter(storage)
            if per_second >= 1:
                self.item = RateLimitItemPerSecond(round(per_second))
            else:
                self.item = RateLimitItemPerMinute(max(1, round(per_second * 60)))

    def wait(self, before_sleeping: Callable[[], None] = lambda: None) -> None:
        while self.limiter is not None and not self.limiter.hit(self.item, "bulletin-send"):
            before_sleeping()
            reset = self.limiter.get_window_stats(self.item, "bulletin-send").reset_time
            time.sleep(min(1.0, max(0.005, reset - time.time())))


def rate_limit() -> SendRate:
    """This process's SendRate, made once per app."""
    rate = current_app.extensions.get("bulletin.send_rate")
    if rate is None:
        rate = current_app.extensions["bulletin.send_rate"] = SendRate(
            current_app.config["SEND_RATE"]
        )
    return rate
