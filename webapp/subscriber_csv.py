"""Readers in and out as CSV: staff imports (`email,name,sections`) and exports.

An import never brings back a reader who left or was erased: the reader's own choice wins
over any list. It reads and checks the whole file before writing anything, then works in chunks
(existing addresses looked up a chunk at a time, new readers inserted a chunk at a time), so
200,000 rows go in without one query per row. The same code makes the dry run (every row
classified, nothing written) and the real run, so their reports agree unless readers changed
in between. Like the other domain modules it flushes and the caller commits (a background
import commits after each chunk through `progress`), then sends the confirmation emails.

Every outcome and problem is a code from `errors.MESSAGES`, so the report reads in the staff
member's language.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice

from sqlalchemy import bindparam, or_, select, update

from .errors import BulletinError
from .extensions import db
from .mailer import clean_display_name
from .many_rows import insert_rows, is_in
from .models import (
    ConsentMethod,
    EventKind,
    EventSource,
    Subscriber,
    SubscriberEvent,
    SubscriberStatus,
    Suppression,
    Topic,
    subscriber_topics,
    utcnow,
)
from .spreadsheet import formula_safe, unformula
from .subscriptions import (
    DAY,
    LEFT,
    SubscriptionError,
    hash_normalized,
    normalize_email,
)

COLUMNS = ("email", "name", "sections")
TOPIC_SEPARATORS = re.compile(r"[;|、]")
# Addresses per IN (...) lookup and rows per INSERT: well under SQLite's 32,766 parameters.
CHUNK = 2000
# How often the reading pass reports its progress, in lines.
READ_PROGRESS_EVERY = 20000


class CsvImportError(BulletinError):
    """A file that cannot be read at all (not UTF-8, empty, no email column: nothing is
    saved), or one row we refuse (reported by its line; the other rows are imported)."""


class Outcome(StrEnum):
    """What an import does (or, in a dry run, would do) with one row."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    ERROR = "error"  # not imported: `notes` says why
    DUPLICATE = "duplicate"  # the same address as an earlier row, merged into it
    SUPPRESSED = "suppressed"  # skipped: the address is suppressed
    UNSUBSCRIBED = "unsubscribed"  # skipped: the reader left; an import does not bring them back


@dataclass
class RowOutcome:
    line: int
    email: str  # as normalized, or as typed (cleaned) when it is not an address
    outcome: Outcome
    notes: list[BulletinError] = field(default_factory=list)  # the error, or warnings


@dataclass
class CsvImportReport:
    created: int = 0
    updated: int = 0  # readers already here whose record the import changed
    unchanged: int = 0  # readers already here, left as they were
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (line, merged into line)
    skipped_suppressed: list[int] = field(default_factory=list)  # lines
    skipped_unsubscribed: list[int] = field(default_factory=list)  # lines
    errors: list[tuple[int, BulletinError]] = field(default_factory=list)  # (line, why)
    # Rows imported without some of their sections (unknown or closed): (line, why).
    warnings: list[tuple[int, BulletinError]] = field(default_factory=list)
    # Pending readers to email a confirmation, after the commit (consented=False only).
    confirmation_ids: list[int] = field(default_factory=list)
    confirmations: int = 0  # how many confirmation emails go (or, in a dry run, would go)
    outcomes: list[RowOutcome] = field(default_factory=list)  # every row, by line

    def counts(self) -> dict[str, int]:
        """The report's figures, as stored and compared between a dry run and the real run."""
        return {
            "added": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "duplicates": len(self.duplicates),
            "suppressed": len(self.skipped_suppressed),
            "unsubscribed": len(self.skipped_unsubscribed),
            "confirmations": self.confirmations,
        }


# progress(stage, done, total, report so far): "read" while lines are checked, "write" after
# each chunk of readers. A background import commits there (see subscriber_imports.py).
Progress = Callable[[str, int, int, "CsvImportReport"], None]


@dataclass
class _Row:
    line: int
    email: str
    name: str
    topic_ids: set[int]
    warnings: list[BulletinError] = field(default_factory=list)


def import_subscribers(
    data: bytes,
    *,
    consented: bool,
    source: str,
    dry_run: bool = False,
    progress: Progress | None = None,
    job_id: int | None = None,
    resuming: bool = False,
) -> CsvImportReport:
    """Import readers from CSV with the header `email,name,sections`.

    `sections` names topics by name or slug, separated by `;`, `|` or `、`; empty means every
    active section. An unknown or closed section is reported for its row (a warning) and the
    row's other sections still apply; a row none of whose sections can be used is an error.
    Rows that cannot be used are reported by line and skipped; the rest are imported. New
    readers become active (`consented=True`: staff vouch for their consent, recorded as
    imported-consented with `source` as the evidence) or pending with their ids in
    `confirmation_ids`. Readers already here keep their sections and status, except that a
    pending one becomes active when `consented`; departed and suppressed addresses are
    skipped. `dry_run` writes nothing and reports what the import would do. Raises
    CsvImportError when the file cannot be read at all.

    `resuming`: an earlier run of import `job_id` broke off after committing some chunks;
    the readers it added or updated count as this import's again (the confirmation emails
    it claimed are the caller's to count: `subscriber_imports.run`).
    """
    report = CsvImportReport()
    db.session.flush()  # our own statements below bypass the ORM's unit of work
    rows = _parse(_decode(data), report, progress)
    outcomes = {outcome.line: outcome for outcome in report.outcomes}
    done = 0
    for chunk in _chunks(rows.values()):
        for row in chunk:
            outcomes[row.line] = RowOutcome(row.line, row.email, Outcome.UNCHANGED, row.warnings)
            report.warnings.extend((row.line, warning) for warning in row.warnings)
        _import_chunk(chunk, outcomes, report, consented, source, dry_run, job_id, resuming)
        done += len(chunk)
        if progress:
            progress("write", done, len(rows), report)
    report.outcomes = [outcomes[line] for line in sorted(outcomes)]
    report.skipped_suppressed.sort()
    report.skipped_unsubscribed.sort()
    report.errors.sort(key=lambda error: error[0])
    report.warnings.sort(key=lambda warning: warning[0])
    db.session.flush()
    return report


def _import_chunk(
    chunk: list[_Row],
    outcomes: dict[int, RowOutcome],
    report: CsvImportReport,
    consented: bool,
    source: str,
    dry_run: bool,
    job_id: int | None,
    resuming: bool = False,
) -> None:
    suppressed = _suppressed_hashes(chunk)
    existing = _existing(chunk)
    earlier = _written_by(job_id, [e[0] for e in existing.values()]) if resuming else {}
    fresh: list[_Row] = []
    known: list[tuple[_Row, tuple]] = []
    for row in chunk:
        if hash_normalized(row.email) in suppressed:
            report.skipped_suppressed.append(row.line)
            outcomes[row.line].outcome = Outcome.SUPPRESSED
        elif row.email in existing and existing[row.email][0] in earlier:
            done = outcomes[row.line].outcome = earlier[existing[row.email][0]]
            if done == Outcome.ADDED:
                report.created += 1
            else:
                report.updated += 1
        elif row.email not in existing:
            fresh.append(row)
        elif existing[row.email][1] in LEFT:
            report.skipped_unsubscribed.append(row.line)
            outcomes[row.line].outcome = Outcome.UNSUBSCRIBED
        else:
            known.append((row, existing[row.email]))
    _update_existing(known, outcomes, report, consented, source, dry_run, job_id)
    _insert_new(fresh, outcomes, report, consented, source, dry_run, job_id)


def _decode(data: bytes) -> str:
    if not data.strip():
        raise CsvImportError("csv-empty")
    if b"\x00" in data:
        raise CsvImportError("csv-binary")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CsvImportError("csv-not-utf8", line=line) from None


def _parse(text: str, report: CsvImportReport, progress: Progress | None) -> dict[str, _Row]:
    """Rows by address, duplicates merged; invalid rows go to `report.errors`."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [cell.strip().lower() for cell in next(reader, [])]
    # Spreadsheets sometimes add empty columns at the end; those are ignored.
    unknown = [name for name in header if name and name not in COLUMNS]
    if "email" not in header or unknown:
        found = ",".join(header)
        raise CsvImportError("csv-header", expected=",".join(COLUMNS), found=found)
    topics = _topic_lookup()
    every_topic = {t.id for t in topics.values() if t is not None}
    lines = text.count("\n") + 1  # an estimate: a quoted cell may span several lines
    rows: dict[str, _Row] = {}
    line = reader.line_num + 1
    for cells in reader:
        start, line = line, reader.line_num + 1  # a quoted cell may span several lines
        if progress and start % READ_PROGRESS_EVERY == 0:
            progress("read", start, lines, report)
        if not any(cell.strip() for cell in cells):
            continue
        try:
            row = _row(start, header, cells, topics, every_topic)
        except CsvImportError as exc:
            report.errors.append((start, exc))
            shown = exc.params.get("email", "")
            report.outcomes.append(RowOutcome(start, shown, Outcome.ERROR, [exc]))
            continue
        first = rows.get(row.email)
        if first is None:
            rows[row.email] = row
        else:
            first.name = row.name or first.name
            first.topic_ids |= row.topic_ids
            report.duplicates.append((row.line, first.line))
            merged = CsvImportError("csv-duplicate", first=first.line)
            report.outcomes.append(
                RowOutcome(row.line, row.email, Outcome.DUPLICATE, [merged, *row.warnings])
            )
            first.warnings.extend(row.warnings)
    if progress:
        progress("read", line - 1, line - 1, report)
    return rows


def _topic_lookup() -> dict[str, Topic | None]:
    """Topic by lower-cased name and slug; None for a section that is no longer offered."""
    lookup: dict[str, Topic | None] = {}
    for topic in db.session.scalars(select(Topic).order_by(Topic.position, Topic.id)):
        for key in (topic.name, topic.slug):
            lookup[key.strip().lower()] = topic if topic.active else None
    return lookup


def _row(
    line: int, header: list[str], cells: list[str], topics: dict, every_topic: set[int]
) -> _Row:
    if len(cells) < len(header):
        raise CsvImportError("csv-column-missing", column=header[len(cells)])
    if len(cells) > len(header):
        raise CsvImportError("csv-columns-extra", count=len(cells), header=len(header))
    values = {name: unformula(cell).strip() for name, cell in zip(header, cells, strict=True)}
    if not values["email"]:
        raise CsvImportError("csv-email-missing")
    email = _email(values["email"])
    topic_ids, warnings = set(), []
    names = [name.strip() for name in TOPIC_SEPARATORS.split(values.get("sections", ""))]
    wanted = list(filter(None, names))
    for name in wanted:
        key = name.lower()
        if key not in topics:
            warnings.append(CsvImportError("csv-topic-unknown", name=name))
        elif topics[key] is None:
            warnings.append(CsvImportError("csv-topic-closed", name=name))
        else:
            topic_ids.add(topics[key].id)
    if wanted and not topic_ids:
        # Every section it names is unknown or closed: reading that as "every section" would
        # subscribe the reader to what they never chose.
        raise CsvImportError("csv-topics-none", email=email, names="; ".join(wanted))
    return _Row(
        line, email, clean_display_name(values.get("name", "")), topic_ids or every_topic, warnings
    )


def _email(typed: str) -> str:
    """The address, normalized; or a CsvImportError saying, in the catalog's words, what is
    wrong with it (email-validator explains in English only)."""
    try:
        return normalize_email(typed)
    except SubscriptionError as exc:
        why = exc.detail
    shown = clean_display_name(typed, limit=100)
    for pattern, code in _EMAIL_PROBLEMS:
        if pattern in why:
            raise CsvImportError(code, email=shown) from None
    raise CsvImportError("csv-email-invalid", email=shown) from None


# email-validator's explanations (it has no codes), most specific first.
_EMAIL_PROBLEMS = (
    ("must have an @-sign", "csv-email-no-at"),
    ("Internationalized characters before the @-sign", "csv-email-non-ascii"),
    ("too long", "csv-email-too-long"),
    ("something before the @-sign", "csv-email-local"),
    ("before the @-sign", "csv-email-local"),
    ("something after the @-sign", "csv-email-domain"),
    ("after the @-sign", "csv-email-domain"),
    ("two periods in a row", "csv-email-periods"),
    ("start with a period", "csv-email-periods"),
    ("end with a period", "csv-email-periods"),
)


def _chunks(items: Iterable, size: int = CHUNK) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _suppressed_hashes(rows: list[_Row]) -> set[str]:
    hashes = [hash_normalized(row.email) for row in rows]
    return set(
        db.session.scalars(
            select(Suppression.email_hash).where(is_in(Suppression.email_hash, hashes))
        )
    )


def _existing(rows: list[_Row]) -> dict[str, tuple]:
    """(id, status, name, confirmation_sent_at) of the readers already here, by address."""
    query = select(
        Subscriber.email,
        Subscriber.id,
        Subscriber.status,
        Subscriber.name,
        Subscriber.confirmation_sent_at,
    ).where(is_in(Subscriber.email, [row.email for row in rows]))
    return {email: tuple(values) for email, *values in db.session.execute(query)}


def _update_existing(
    known: list[tuple[_Row, tuple]],
    outcomes: dict[int, RowOutcome],
    report: CsvImportReport,
    consented: bool,
    source: str,
    dry_run: bool,
    job_id: int | None,
) -> None:
    """Readers already here: fill in a missing name; make a pending one active if `consented`.

    Their sections are not touched: they chose them (and may have left some on purpose).
    """
    now = utcnow()
    names, activate, pending, events = [], [], [], []
    for row, (subscriber_id, status, name, emailed_at) in known:
        changed = []
        if not name and row.name:
            names.append({"b_id": subscriber_id, "b_name": row.name})
            changed.append("name")
        if status == SubscriberStatus.PENDING:
            if consented:
                activate.append(subscriber_id)
                changed.append("status")
            else:
                pending.append(subscriber_id)
                if dry_run and (emailed_at is None or emailed_at <= now - DAY):
                    report.confirmations += 1
        if changed:
            report.updated += 1
            outcomes[row.line].outcome = Outcome.UPDATED
            events.append(_event(subscriber_id, now, source, job_id, updated=changed))
        else:
            report.unchanged += 1
    if dry_run:
        return
    table = Subscriber.__table__
    if names:
        db.session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.name == "")
            .values(name=bindparam("b_name"), updated_at=now),
            names,
        )
    if activate:
        db.session.execute(
            update(table)
            .where(is_in(table.c.id, activate), table.c.status == SubscriberStatus.PENDING)
            .values(
                status=SubscriberStatus.ACTIVE,
                updated_at=now,
                consented_at=now,
                consent_ip=None,
                consent_user_agent=None,
                consent_source=source[:200],
                consent_method=ConsentMethod.IMPORTED_CONSENTED,
            )
        )
    if pending:
        # Once a day: a re-import does not mail them again (a reader asking through the form
        # may, sooner: subscriptions.claim_confirmation).
        claimed = list(
            db.session.scalars(
                update(table)
                .where(
                    is_in(table.c.id, pending),
                    table.c.status == SubscriberStatus.PENDING,
                    or_(
                        table.c.confirmation_sent_at.is_(None),
                        table.c.confirmation_sent_at <= now - DAY,
                    ),
                )
                .values(confirmation_sent_at=now, updated_at=now)
                .returning(table.c.id)
            )
        )
        report.confirmation_ids.extend(claimed)
        report.confirmations += len(claimed)
    _insert_events(events)
    # The statements above bypass the ORM: readers the session holds must be read again.
    for held in list(db.session.identity_map.values()):
        if isinstance(held, Subscriber):
            db.session.expire(held)


def _insert_new(
    fresh: list[_Row],
    outcomes: dict[int, RowOutcome],
    report: CsvImportReport,
    consented: bool,
    source: str,
    dry_run: bool,
    job_id: int | None,
) -> None:
    if not fresh:
        return
    if dry_run:
        report.created += len(fresh)
        if not consented:
            report.confirmations += len(fresh)
        for row in fresh:
            outcomes[row.line].outcome = Outcome.ADDED
        return
    now = utcnow()
    status = SubscriberStatus.ACTIVE if consented else SubscriberStatus.PENDING
    values = [
        {
            "email": row.email,
            "name": row.name,
            "status": status,
            "locale": "zh",
            "created_at": now,
            "updated_at": now,
            # Pending readers' consent is their confirmation click, recorded by confirm().
            "consented_at": now if consented else None,
            "consent_source": source[:200],
            "consent_method": ConsentMethod.IMPORTED_CONSENTED if consented else None,
            "confirmation_sent_at": None if consented else now,
        }
        for row in fresh
    ]
    # An address that signed up on the web while the import ran keeps its record: the
    # insert skips it, and it has another created_at than the rows stamped with `now`.
    # (A plain executemany, then one SELECT: INSERT ... RETURNING over thousands of rows
    # is several times slower with psycopg.)
    table = Subscriber.__table__
    insert_rows(table, values, ignore_conflicts=True)
    inserted = dict(
        db.session.execute(
            select(table.c.email, table.c.id).where(
                is_in(table.c.email, [row.email for row in fresh]), table.c.created_at == now
            )
        ).all()
    )
    report.created += len(inserted)
    report.unchanged += len(fresh) - len(inserted)
    links, events = [], []
    for row in fresh:
        subscriber_id = inserted.get(row.email)
        if subscriber_id is None:
            continue
        outcomes[row.line].outcome = Outcome.ADDED
        links.extend({"subscriber_id": subscriber_id, "topic_id": t} for t in row.topic_ids)
        events.append(_event(subscriber_id, now, source, job_id, topics=sorted(row.topic_ids)))
        if not consented:
            report.confirmation_ids.append(subscriber_id)
            report.confirmations += 1
    insert_rows(subscriber_topics, links)
    _insert_events(events)


def _written_by(job_id: int | None, subscriber_ids: list[int]) -> dict[int, Outcome]:
    """Which of these readers import `job_id` already added or updated, by their `imported`
    event (the one that names the import)."""
    if job_id is None or not subscriber_ids:
        return {}
    query = select(SubscriberEvent.subscriber_id, SubscriberEvent.detail).where(
        is_in(SubscriberEvent.subscriber_id, subscriber_ids),
        SubscriberEvent.kind == EventKind.IMPORTED,
    )
    written = {}
    for subscriber_id, detail in db.session.execute(query):
        # Read as text: a detail with many sections is cut at 1,000 characters (`_event`),
        # after its "by", "import" and "updated" keys (they sort first).
        named = _NAMES_IMPORT.search(detail or "")
        if named and int(named.group(1)) == job_id:
            added = '"updated"' not in detail
            written[subscriber_id] = Outcome.ADDED if added else Outcome.UPDATED
    return written


_NAMES_IMPORT = re.compile(r'"import": (\d+)')


def _event(subscriber_id: int, now, source: str, job_id: int | None, **detail) -> dict:
    detail["by"] = source
    if job_id is not None:
        detail["import"] = job_id  # the staff page of that import has the whole report
    return {
        "subscriber_id": subscriber_id,
        "kind": EventKind.IMPORTED,
        "source": EventSource.IMPORT.value,
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True)[:1000],
        "created_at": now,
    }


def _insert_events(events: list[dict]) -> None:
    insert_rows(SubscriberEvent.__table__, events)


def export_subscribers(
    *, status: SubscriberStatus | None = None, topic_id: int | None = None
) -> str:
    """All readers (or those with this status / section) as CSV:
    `email,name,status,sections,created_at`, every cell quoted and formula-safe."""
    query = select(
        Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.created_at
    ).order_by(Subscriber.id)
    links = (
        select(subscriber_topics.c.subscriber_id, Topic.name)
        .join(Topic, Topic.id == subscriber_topics.c.topic_id)
        .order_by(subscriber_topics.c.subscriber_id, Topic.position, Topic.id)
    )
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic_id is not None:
        chosen = select(subscriber_topics.c.subscriber_id).where(
            subscriber_topics.c.topic_id == topic_id
        )
        query = query.where(Subscriber.id.in_(chosen))
    topics: dict[int, list[str]] = {}
    for subscriber_id, name in db.session.execute(links):
        topics.setdefault(subscriber_id, []).append(name)
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(["email", "name", "status", "sections", "created_at"])
    for subscriber_id, email, name, row_status, created_at in db.session.execute(query):
        cells = [
            email,
            name,
            row_status.value,
            ";".join(topics.get(subscriber_id, [])),
            created_at.isoformat(),
        ]
        writer.writerow([formula_safe(cell) for cell in cells])
    return out.getvalue()
