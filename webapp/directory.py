"""The staff's view of the readers: a searchable, filterable list, counts, one reader's
history, and the list as CSV.

The list pages by keyset (ids below the last one shown), never by OFFSET, so page 2,000 is
as quick as page 1 and a reader who signs up meanwhile does not shift every later page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.orm import selectinload

from . import counters, pg_csv
from .extensions import db
from .models import (
    Delivery,
    DeliveryStatus,
    Issue,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Topic,
    subscriber_topics,
)
from .spreadsheet import formula_safe

MAX_LIMIT = 500
# Readers per query when the whole filtered list is read (CSV export, bulk changes).
CHUNK = 5000


@dataclass(frozen=True)
class Filters:
    """What staff narrowed the list to; every part optional, all parts combined."""

    search: str = ""  # any part of the address or of the name
    status: SubscriberStatus | None = None
    topic_id: int | None = None
    locale: str | None = None

    def as_dict(self) -> dict:
        """JSON-able, for storing with a bulk change."""
        values = asdict(self)
        values["status"] = self.status.value if self.status else None
        return values

    @classmethod
    def from_dict(cls, values: dict) -> Filters:
        status = values.get("status")
        return cls(
            search=values.get("search") or "",
            status=SubscriberStatus(status) if status else None,
            topic_id=values.get("topic_id"),
            locale=values.get("locale"),
        )


@dataclass(frozen=True)
class Page:
    rows: list[Subscriber]  # newest first, with their topics loaded
    next_after_id: int | None  # pass as `after_id` for the next page; None on the last page


@dataclass(frozen=True)
class TopicCount:
    topic_id: int
    name: str
    active: bool  # whether the section is still offered
    readers: int  # active readers who chose it: who would get it in the next issue
    pending: int  # readers who chose it and have yet to confirm
    name_en: str | None = None  # its English name (i18n.topic_name)


def list_subscribers(
    *,
    search: str = "",
    status: SubscriberStatus | None = None,
    topic_id: int | None = None,
    locale: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> Page:
    """One page of readers, newest first: those whose address or name contains `search`,
    with `status`, who chose `topic_id`, in `locale`, and whose id is below `after_id` (the
    previous page's `next_after_id`)."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = subscribers_query(
        search=search,
        status=status,
        topic_id=topic_id,
        locale=locale,
        after_id=after_id,
        limit=limit + 1,
    )
    rows = list(db.session.scalars(query.options(selectinload(Subscriber.topics))))
    # One row more than shown was asked for: it tells whether there is a next page.
    if len(rows) > limit:
        return Page(rows[:limit], rows[limit - 1].id)
    return Page(rows, None)


def subscribers_query(
    *,
    search: str = "",
    status: SubscriberStatus | None = None,
    topic_id: int | None = None,
    locale: str | None = None,
    after_id: int | None = None,
    limit: int | None,
) -> Select:
    """The SELECT behind `list_subscribers`: ordered by id, so the primary key (or the
    (status, id) and (topic_id, subscriber_id) indexes) serves it without sorting."""
    # The limit is written into the SQL too (see the search below): a generic plan that
    # cannot see it went back to walking the whole list by id.
    query = select(Subscriber).order_by(Subscriber.id.desc())
    if limit is not None:
        query = query.limit(literal_column(str(int(limit))))
    return filtered_query(query, Filters(search, status, topic_id, locale), after_id=after_id)


def _contains_pattern(search: str):
    """A LIKE pattern for `search` anywhere, written into the SQL (quoted by SQLAlchemy), not
    sent as a parameter: psycopg prepares a statement run five times, and PostgreSQL's
    generic plan for `LIKE $1` cannot see that a rare pattern wants the trigram index (it
    walked all 100,000 readers by id instead: 300 ms instead of 5)."""
    pattern = "%" + search.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
    return literal(pattern, literal_execute=True)


def address_contains(search: str):
    """Readers whose address (stored lower-cased) contains `search`, case aside: a clause
    PostgreSQL answers from its trigram index (ix_subscribers_email_trgm); SQLite scans."""
    return Subscriber.email.like(_contains_pattern(search.strip().lower()), escape="/")


def filtered_query(query: Select, filters: Filters, *, after_id: int | None = None) -> Select:
    """`query` (a SELECT from subscribers) narrowed to the readers `filters` match, with ids
    below `after_id`."""
    search = filters.search.strip()
    if search:
        # Any part of the address or of the name, case aside: a prefix is a part too.
        query = query.where(
            or_(
                address_contains(search),
                Subscriber.name.ilike(_contains_pattern(search), escape="/"),
            )
        )
    status, topic_id = filters.status, filters.topic_id
    if filters.locale:
        query = query.where(Subscriber.locale == filters.locale)
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic_id is not None:
        query = query.join(
            subscriber_topics,
            (subscriber_topics.c.subscriber_id == Subscriber.id)
            & (subscriber_topics.c.topic_id == topic_id),
        )
    if after_id is not None:
        query = query.where(Subscriber.id < after_id)
    return query


def counts_by_status() -> dict[SubscriberStatus, int]:
    """How many readers are in each status (every status present, zeros included), from
    the maintained counters (counters.py), not by counting the table."""
    counts = dict.fromkeys(SubscriberStatus, 0)
    for (status, topic_id), count in counters.readers().items():
        if topic_id == counters.ALL_READERS and status in counts:
            counts[SubscriberStatus(status)] = count
    return counts


def counts_by_topic() -> list[TopicCount]:
    """Every section, in the bulletin's order, with its active and pending readers (from
    the maintained counters)."""
    counts = counters.readers()
    topics = db.session.scalars(select(Topic).order_by(Topic.position, Topic.id))
    return [
        TopicCount(
            topic_id=t.id,
            name=t.name,
            name_en=t.name_en,
            active=t.active,
            readers=counts.get((SubscriberStatus.ACTIVE, t.id), 0),
            pending=counts.get((SubscriberStatus.PENDING, t.id), 0),
        )
        for t in topics
    ]


def count_matching(filters: Filters, *, upto_id: int | None = None) -> int:
    """How many readers the filter matches (with ids up to `upto_id`, when given)."""
    query = filtered_query(select(Subscriber.id), filters)
    if upto_id is not None:
        query = query.where(Subscriber.id <= upto_id)
    return db.session.scalar(select(func.count()).select_from(query.subquery())) or 0


def highest_matching_id(filters: Filters) -> int | None:
    """The newest reader the filter matches: a bulk change stops there, so readers who sign
    up after staff confirmed it are left alone."""
    query = filtered_query(select(Subscriber.id), filters).order_by(Subscriber.id.desc()).limit(1)
    return db.session.scalar(query)


def matching_ids(
    filters: Filters, *, upto_id: int, below_id: int | None, limit: int = CHUNK
) -> list[int]:
    """The next `limit` matching reader ids, newest first, from `upto_id` (inclusive) down
    and below `below_id` (the last id of the chunk before)."""
    query = filtered_query(select(Subscriber.id), filters, after_id=below_id)
    query = query.where(Subscriber.id <= upto_id).order_by(Subscriber.id.desc()).limit(limit)
    return list(db.session.scalars(query))


CSV_COLUMNS = ["email", "name", "status", "sections", "created_at"]


def csv_lines(filters: Filters) -> Iterator[str]:
    """Every reader the filter matches as CSV (the import's columns plus status and date),
    streamed a chunk at a time: memory stays flat however long the list. Oldest first,
    every cell quoted and made safe for spreadsheets; the first line starts with a BOM so
    that Excel reads the Chinese names as UTF-8."""
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerow(CSV_COLUMNS)
    yield "\ufeff" + buffer.getvalue()
    # Two ways to the same bytes: on PostgreSQL the database writes the lines (pg_csv), four
    # times as fast as Python's csv module and SQLAlchemy's rows; SQLite, the embedded
    # default with short lists, keeps the Python path, the reference the SQL path is tested
    # against (tests/test_csv_exports.py).
    if db.session.get_bind().dialect.name == "postgresql":
        yield from _csv_chunks_in_sql(filters)
    else:
        yield from _csv_chunks_in_python(filters)


def _csv_chunks_in_sql(filters: Filters) -> Iterator[str]:
    topics = db.session.execute(select(Topic.id, Topic.name).order_by(Topic.position, Topic.id))
    masks, sections = _sections_cell([tuple(topic) for topic in topics])
    line = pg_csv.line(
        pg_csv.text_cell(Subscriber.email),
        pg_csv.text_cell(Subscriber.name),
        pg_csv.plain_cell(Subscriber.status),
        sections,
        pg_csv.time_cell(Subscriber.created_at),
    )
    query = select(line).select_from(Subscriber)
    if masks is not None:
        query = query.join(masks, true())
    query = filtered_query(query, filters).order_by(Subscriber.id)
    yield from pg_csv.copy_lines(query, rows=CHUNK)


MASK_BITS = 63  # the bits of a bigint that keep it positive


def _sections_cell(topics: list[tuple[int, str]]) -> tuple[Subquery | None, ColumnElement]:
    """The sections cell of the SQL-built export (see pg_csv.line), and the LATERAL
    subquery it reads.

    string_agg(name ORDER BY position) sorted each reader's two or three names and took
    half the export's time. Instead each reader's sections are a bit mask (a bit per
    section, in the bulletin's order; a bigint per 63 sections), and the cell is the
    sections' names, known when the query is built, picked by their bits in that order."""
    if not topics:
        return None, literal_column("''")
    chosen = subscriber_topics.alias("chosen")
    blocks = []
    for start in range(0, len(topics), MASK_BITS):
        bits = case(
            *[
                (chosen.c.topic_id == literal_column(str(topic_id)), literal_column(str(1 << k)))
                for k, (topic_id, _name) in enumerate(topics[start : start + MASK_BITS])
            ],
        )
        blocks.append(func.coalesce(func.bit_or(cast(bits, BigInteger)), 0))
    masks = (
        select(*[mask.label(f"m{n}") for n, mask in enumerate(blocks)])
        .where(chosen.c.subscriber_id == Subscriber.id)
        .lateral("masks")
    )
    mask = [masks.c[f"m{n}"] for n in range(len(blocks))]
    cell = None
    for rank, (_topic_id, name) in enumerate(topics):
        block, bit = divmod(rank, MASK_BITS)
        # The first chosen section opens the cell, so it alone is made formula-safe; the
        # others follow a ";". Quotes doubled, as csv.writer doubles them.
        first, later = formula_safe(name).replace('"', '""'), ";" + name.replace('"', '""')
        earlier = [mask[n] == 0 for n in range(block)]
        if bit:
            earlier.append(mask[block].op("&")((1 << bit) - 1) == 0)
        piece = case(
            (mask[block].op("&")(1 << bit) == 0, literal_column("''")),
            (and_(true(), *earlier), literal(first, literal_execute=True)),
            else_=literal(later, literal_execute=True),
        )
        cell = piece if cell is None else cell.concat(piece)
    return masks, cell


def _csv_chunks_in_python(filters: Filters) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    topics = db.session.execute(select(Topic.id, Topic.name).order_by(Topic.position, Topic.id))
    names = {topic_id: (rank, name) for rank, (topic_id, name) in enumerate(topics)}
    columns = select(
        Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.created_at
    )
    after = 0
    while True:
        query = filtered_query(columns, filters).where(Subscriber.id > after)
        rows = db.session.execute(query.order_by(Subscriber.id).limit(CHUNK)).all()
        if not rows:
            return
        # The chunk's sections by its id range, not by a list of its ids: one short query
        # (readers outside the filter in that range cost a row each and are skipped).
        links = db.session.execute(
            select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
                subscriber_topics.c.subscriber_id > after,
                subscriber_topics.c.subscriber_id <= rows[-1].id,
            )
        )
        chosen: dict[int, list[tuple[int, str]]] = {}
        for subscriber_id, topic_id in links:
            chosen.setdefault(subscriber_id, []).append(names[topic_id])
        for row in rows:
            sections = ";".join(name for _rank, name in sorted(chosen.get(row.id, ())))
            cells = [row.email, row.name, row.status.value, sections, row.created_at.isoformat()]
            writer.writerow([formula_safe(cell) for cell in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        after = rows[-1].id


@dataclass(frozen=True)
class DeliveryLine:
    issue_id: int
    issue_title: str
    status: DeliveryStatus
    attempts: int
    smtp_reply: str
    sent_at: object  # datetime | None
    updated_at: object


def history(subscriber_id: int, *, limit: int = 100) -> list[SubscriberEvent]:
    """A reader's events, newest first (the latest `limit`)."""
    query = (
        select(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == subscriber_id)
        .order_by(SubscriberEvent.created_at.desc(), SubscriberEvent.id.desc())
        .limit(limit)
    )
    return list(db.session.scalars(query))


def recent_deliveries(subscriber_id: int, *, issues: int = 10) -> list[DeliveryLine]:
    """What happened to the reader's copy of each of the last `issues` issues sent to them,
    newest first."""
    query = (
        select(
            Delivery.issue_id,
            Issue.title,
            Delivery.status,
            Delivery.attempts,
            Delivery.smtp_reply,
            Delivery.sent_at,
            Delivery.updated_at,
        )
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == subscriber_id)
        .order_by(Delivery.issue_id.desc())
        .limit(issues)
    )
    return [
        DeliveryLine(i, title, status, attempts, reply, sent, updated)
        for i, title, status, attempts, reply, sent, updated in db.session.execute(query)
    ]
