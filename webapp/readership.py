"""Readership: which issues, sections and articles readers follow, counted without tracking
anyone.

Links in emails to an article's web version and to its source go through `/r/<token>`. The
signed token names the issue, the article and the kind of link (and, for a source, its
address), never the reader, so every reader of a set of sections gets the same digest and
it is still rendered once per set. Following a link adds one to a counter per (issue,
article, kind, hour) in Redis, one HINCRBY; the public issue and article pages count their
views the same way. Nothing else is kept: no address, no IP, no user agent, no cookie. The
sweeper moves the counters into `read_counts` (`flush`), exactly once even if it dies
midway.

Requests that announce themselves as link scanners or prefetchers (`is_scanner`) are
counted apart, as `filtered`, so staff see both figures.

There is no open tracking: no pixel, ever. Since Apple's Mail Privacy Protection (2021)
fetches every image, opens measure mail clients, not readers, and a pixel per reader is
exactly the per-person tracking this module avoids.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import redis as redis_lib
from flask import current_app
from sqlalchemy import Integer, delete, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from . import site_settings
from .extensions import db, redis_client
from .models import (
    Delivery,
    Issue,
    IssueStatus,
    ReadCount,
    ReadCountFlush,
    SectionDepartures,
    TopicRecipients,
    subscriber_topics,
    utcnow,
)
from .rendering import IssueContent, safe_url
from .tokens import TokenError, external_url, make_link_token, read_link_token
from .transactions import Step, commit_step, rollback

log = logging.getLogger(__name__)

ISSUE_PAGE = 0  # the article id of an issue's own web page
# Counts of issues that never went out (a link in a preview or a test send) are dropped.
COUNTED_STATUSES = (
    IssueStatus.SENDING,
    IssueStatus.PAUSED,
    IssueStatus.SENT,
    IssueStatus.CANCELLED,
)
# A flushed batch's ledger row is kept this long; a batch left in Redis by a crash is
# written at the next sweep, long before.
FLUSH_LEDGER_DAYS = 7


class LinkKind(StrEnum):
    WEB = "web"  # an article's web version: its title and 阅读全文 in an email
    SOURCE = "source"  # the article's source, as the email links it
    PAGE = "page"  # a view of the public issue or article page


# Mail security gateways and link-preview bots that name themselves in the User-Agent
# header. Matched case-insensitively anywhere in the header. Gateways that fetch with an
# ordinary browser's User-Agent cannot be told from readers, and are counted.
SCANNER_AGENTS = (
    "bot",  # Googlebot, bingbot, Slackbot, Twitterbot, ...: crawlers and link unfurlers
    "crawler",
    "spider",
    "preview",  # BingPreview, link previews in chat clients
    "safelinks",  # Microsoft Defender for Office 365 Safe Links
    "microsoft defender",
    "barracuda",
    "proofpoint",
    "mimecast",
    "symantec",
    "forcepoint",
    "trend micro",
    "trendmicro",
    "sophos",
    "fireeye",
    "zscaler",
    "cisco",
    "python-requests",
    "curl/",
    "wget/",
    "go-http-client",
)
_SCANNER_AGENT = re.compile("|".join(re.escape(a) for a in SCANNER_AGENTS), re.IGNORECASE)
# Browsers say so when they fetch a page ahead of a click: Chrome `Sec-Purpose: prefetch`
# (and the older `Purpose: prefetch`), Safari `X-Purpose: preview`, Firefox `X-Moz: prefetch`.
PREFETCH_HEADERS = ("Sec-Purpose", "Purpose", "X-Purpose", "X-Moz")


def is_scanner(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request is a machine's, not a reader's: anything but GET (HEAD is what
    many scanners send), a prefetch or preview announced in a header, or a User-Agent on
    the SCANNER_AGENTS list."""
    if method != "GET":
        return True
    for name in PREFETCH_HEADERS:
        value = headers.get(name, "").lower()
        if "prefetch" in value or "preview" in value or "prerender" in value:
            return True
    return bool(_SCANNER_AGENT.search(headers.get("User-Agent", "")))


# -- links ----------------------------------------------------------------------------------


def counted_url(issue_id: int, article_id: int, kind: LinkKind, target: str = "") -> str:
    """The /r/ address for a link. A web-version link's target follows from the ids; a
    source's address is carried in the token, so the redirect reads no database."""
    payload: list = [issue_id, article_id, kind.value]
    if kind == LinkKind.SOURCE:
        payload.append(target)
    return external_url("public.counted_link", token=make_link_token(payload))


def with_counted_links(content: IssueContent) -> IssueContent:
    """The issue with its article and source links going through /r/ (when counting is on).

    The same for every reader: the token names no one."""
    sections = tuple(
        replace(
            topic,
            articles=tuple(
                replace(
                    article,
                    web_url=counted_url(content.id, article.id, LinkKind.WEB),
                    source_url=(
                        counted_url(content.id, article.id, LinkKind.SOURCE, url)
                        if (url := safe_url(article.source_url))
                        else ""
                    ),
                )
                for article in topic.articles
            ),
        )
        for topic in content.sections
    )
    return replace(content, sections=sections)


def counting_on() -> bool:
    return bool(site_settings.cached_value("counted_links"))


def resolve(token: str) -> tuple[int, int, LinkKind, str]:
    """(issue id, article id, kind, where to send the reader) for a counted link's token.

    Raises TokenError for a token we did not sign (or one that is malformed)."""
    payload = read_link_token(token)
    try:
        issue_id, article_id, kind = int(payload[0]), int(payload[1]), LinkKind(payload[2])
    except (IndexError, TypeError, ValueError):
        raise TokenError("This link is not valid.") from None
    if kind == LinkKind.SOURCE:
        target = safe_url(payload[3] if len(payload) > 3 else "")
    elif kind == LinkKind.WEB:
        target = external_url("public.article", issue_id=issue_id, article_id=article_id)
    else:
        target = ""
    if not target:
        raise TokenError("This link is not valid.")
    return issue_id, article_id, kind, target


# -- counting -------------------------------------------------------------------------------


def key_prefix() -> str:
    """This deployment's counter keys: one Redis can serve several (see CELERY_QUEUE)."""
    return f"{current_app.config['CELERY_QUEUE']}:readership:"


def counts_prefix() -> str:
    return key_prefix() + "counts:"  # + the hour (seconds since 1970 / 3600)


def flushing_prefix() -> str:
    return key_prefix() + "flushing:"  # + hour:batch id, while being written


def _hour(now: datetime | None = None) -> int:
    return int((now or utcnow()).timestamp()) // 3600


def count(issue_id: int, article_id: int, kind: LinkKind, *, filtered: bool) -> None:
    """Add one to this hour's counter: one Redis command. A Redis failure loses this one
    count (logged, without anything about the request) and never the reader's redirect."""
    field = f"{issue_id}:{article_id}:{kind.value}:{'f' if filtered else 'c'}"
    try:
        redis_client().hincrby(f"{counts_prefix()}{_hour()}", field, 1)
    except redis_lib.RedisError as exc:
        log.warning("readership: a count was lost, Redis unavailable: %s", exc)


def count_request(
    issue_id: int, article_id: int, kind: LinkKind, method: str, headers: Mapping[str, str]
) -> None:
    """Count one request for a link or a page, when counting is switched on."""
    if counting_on():
        count(issue_id, article_id, kind, filtered=is_scanner(method, headers))


def follow(token: str, method: str, headers: Mapping[str, str]) -> str:
    """Where a counted link sends the reader; counts the request (when counting is on).

    Raises TokenError for a token we did not sign, and counts nothing then."""
    issue_id, article_id, kind, target = resolve(token)
    count_request(issue_id, article_id, kind, method, headers)
    return target


# -- flushing to the database ----------------------------------------------------------------


def flush() -> int:
    """Move the counters from Redis into `read_counts`; returns how many clicks and views
    were written. Commits once per batch.

    Exactly once, whatever crashes where: each hour's hash is first RENAMEd to a batch key
    of its own (atomic; new clicks start a fresh hash), then its counts and the batch's
    name go into the database in one transaction, then the batch key is deleted. A batch
    whose name the database already has was written before a crash: it is only deleted. A
    batch left by a crash before the commit is written at the next flush.
    """
    client = redis_client()
    counting, flushing = counts_prefix(), flushing_prefix()
    for key in client.scan_iter(match=f"{counting}*", count=1000):
        hour = key.decode().removeprefix(counting)
        try:
            client.rename(key, f"{flushing}{hour}:{uuid.uuid4().hex}")
        except redis_lib.ResponseError:  # another flush took it first
            continue
    written = 0
    for key in client.scan_iter(match=f"{flushing}*", count=1000):
        written += _write_batch(client, key.decode())
    db.session.execute(
        delete(ReadCountFlush).where(
            ReadCountFlush.created_at < utcnow() - timedelta(days=FLUSH_LEDGER_DAYS)
        )
    )
    commit_step(Step.COUNTS_PRUNED)
    return written


def _write_batch(client: redis_lib.Redis, key: str) -> int:
    batch = key.removeprefix(flushing_prefix())
    if db.session.get(ReadCountFlush, batch) is not None:
        client.delete(key)  # written before a crash: deleting it is what was left to do
        return 0
    hour = datetime.fromtimestamp(int(batch.split(":")[0]) * 3600, UTC)
    totals: dict[tuple[int, int, str], list[int]] = defaultdict(lambda: [0, 0])
    for field, value in client.hgetall(key).items():
        issue_id, article_id, kind, which = field.decode().split(":")
        totals[(int(issue_id), int(article_id), kind)][which == "f"] += int(value)
    sent = set(
        db.session.scalars(
            select(Issue.id).where(
                Issue.id.in_({issue_id for issue_id, _, _ in totals}),
                Issue.status.in_(COUNTED_STATUSES),
            )
        )
    )
    rows = [
        {
            "issue_id": issue_id,
            "article_id": article_id,
            "kind": kind,
            "hour": hour,
            "counted": counted,
            "filtered": filtered,
        }
        for (issue_id, article_id, kind), (counted, filtered) in totals.items()
        if issue_id in sent
    ]
    if rows:
        _upsert(ReadCount, rows, ["issue_id", "article_id", "kind", "hour"],
                ["counted", "filtered"])  # fmt: skip
    db.session.add(ReadCountFlush(batch=batch))
    try:
        commit_step(Step.COUNTS_WRITTEN)
    except IntegrityError:
        rollback()  # a second sweeper wrote this batch at the same moment
        if db.session.get(ReadCountFlush, batch) is None:
            raise
    client.delete(key)
    return sum(r["counted"] + r["filtered"] for r in rows)


def _upsert(model, rows: list[dict], keys: list[str], sums: list[str]) -> None:
    """INSERT the rows, adding their `sums` to a row that has the same `keys` already."""
    dialect_insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(model).values(rows)
    db.session.execute(
        statement.on_conflict_do_update(
            index_elements=keys,
            set_={c: getattr(model, c) + getattr(statement.excluded, c) for c in sums},
        )
    )


# -- recipients per section --------------------------------------------------------------------


def recipients_query(issue_id: int, topic_ids: set[int]):
    """(topic id, readers) for the issue's planned deliveries, by the sections readers have
    now: one GROUP BY over the issue's deliveries."""
    return (
        select(subscriber_topics.c.topic_id, func.count())
        .select_from(Delivery)
        .join(subscriber_topics, subscriber_topics.c.subscriber_id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id, subscriber_topics.c.topic_id.in_(topic_ids))
        .group_by(subscriber_topics.c.topic_id)
    )


def record_recipients(issue_id: int, topic_ids: set[int]) -> None:
    """Keep how many readers each section of the issue goes to, as planned at publishing
    (readers change sections afterwards, and the report's rates need the count of then).
    One INSERT ... SELECT; flushed with the plan, in the caller's transaction."""
    query = recipients_query(issue_id, topic_ids).add_columns(literal(issue_id, Integer))
    db.session.execute(
        insert(TopicRecipients).from_select(["topic_id", "recipients", "issue_id"], query)
    )


# -- readers leaving a section ------------------------------------------------------------------

LEFT_ALTOGETHER = 0  # the topic id under which readers who left altogether are counted


def count_departures(topic_ids: Collection[int]) -> None:
    """One more reader gone from each of these sections (LEFT_ALTOGETHER: from everything)
    this hour, for the report's unsubscribes in the week after an issue. Flushed in the
    caller's transaction, with the event that records the change (subscriptions.log_event)."""
    if topic_ids:
        hour = utcnow().replace(minute=0, second=0, microsecond=0)
        # Rows are locked in one order by every transaction, sections by id and "left
        # altogether" last (as when a reader stops their last section: that section, then
        # leaving), so two readers leaving at once wait for each other but never deadlock.
        order = sorted(set(topic_ids), key=lambda t: (t == LEFT_ALTOGETHER, t))
        rows = [{"topic_id": t, "hour": hour, "readers": 1} for t in order]
        _upsert(SectionDepartures, rows, ["topic_id", "hour"], ["readers"])


# -- logs ------------------------------------------------------------------------------------

# Requests whose reader must not be identifiable from a log line.
# (The request line may be wrapped in ANSI colour codes.)
COUNTED_PATHS = re.compile(r"^(?:\x1b\[[\d;]*m)*(?:GET|HEAD) /(?:r/|issues/)")


class NoReaderAddress(logging.Filter):
    """Drops the client address from the development server's request lines for counted
    links and pages (werkzeug writes `ADDRESS - - [date] "GET /r/..." 302 -`). Gunicorn, as
    the Procfile runs it, writes no access log at all."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if args and isinstance(args[0], str) and COUNTED_PATHS.match(args[0]):
            record.msg = "- " + str(record.msg).split(" ", 1)[1]
        return True


def keep_readers_out_of_logs() -> None:
    """Install `NoReaderAddress` on the development server's logger (once)."""
    logger = logging.getLogger("werkzeug")
    if not any(isinstance(f, NoReaderAddress) for f in logger.filters):
        logger.addFilter(NoReaderAddress())
