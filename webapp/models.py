"""Tables as typed SQLAlchemy 2 models. Logic lives in the domain modules, not here."""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, date, datetime

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_link_key() -> str:
    """A reader's link key: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


class UtcDateTime(TypeDecorator):
    """A moment, stored in UTC and read back with its zone on every database.

    PostgreSQL keeps the zone itself; SQLite keeps neither zone nor offset, so without this
    it would hand back naive datetimes, and store a Shanghai-time value as if it were UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# `info` of an index that exists only on PostgreSQL (the migration skips it on SQLite).
POSTGRESQL_ONLY = {"postgresql_only": True}


def exists_on(dialect: str, obj) -> bool:
    """Whether the migrations build `obj` (a schema item) on this database dialect."""
    return dialect == "postgresql" or not getattr(obj, "info", {}).get("postgresql_only")


def _status(enum_cls: type[enum.Enum]) -> Enum:
    # Stored as short strings (not a native PostgreSQL enum) so adding a status is a plain
    # migration on both SQLite and PostgreSQL.
    return Enum(
        enum_cls,
        native_enum=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class ConsentMethod(enum.StrEnum):
    DOUBLE_OPT_IN = "double-opt-in"  # the reader confirmed by clicking the emailed link
    IMPORTED_CONSENTED = "imported-consented"  # staff imported them and vouch for consent


class EventKind(enum.StrEnum):
    SUBSCRIBED = "subscribed"
    CONFIRMED = "confirmed"
    TOPICS_CHANGED = "topics_changed"
    UNSUBSCRIBED = "unsubscribed"
    RESUBSCRIBED = "resubscribed"
    ERASED = "erased"
    IMPORTED = "imported"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    PROFILE_CHANGED = "profile_changed"
    # A sign-up email claimed (the confirmation, or an active reader's preferences link: the
    # detail's "email"), or staff sent the confirmation again; counted for the daily limit.
    CONFIRMATION_SENT = "confirmation_sent"


class EventSource(enum.StrEnum):
    """Where a change came from; stored as a short string, so a new source needs no migration."""

    WEB = "web"
    EMAIL_LINK = "email-link"
    ONE_CLICK = "one-click"
    IMPORT = "import"
    STAFF = "staff"
    CLI = "cli"
    BOUNCE = "bounce"
    API = "api"
    STAFF_BULK = "staff-bulk"  # a bulk change staff made to a filtered list of readers


# What a readers import records as their consent source and in their `imported` events
# (labels.event_detail reads it back): from the command line, or a file staff uploaded.
IMPORT_SOURCE_CLI = "cli import"
IMPORT_SOURCE_STAFF = "csv import by "  # + the staff member's address


class SuppressionReason(enum.StrEnum):
    ERASED = "erased"
    HARD_BOUNCE = "hard-bounce"
    COMPLAINT = "complaint"
    STAFF = "staff"


class IssueStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"  # by staff, or by us when the SMTP server refuses us (5.7.x)
    SENT = "sent"
    CANCELLED = "cancelled"


class ReviewStage(enum.StrEnum):
    """Where a draft stands in review (送审): the issue's status says where it stands in
    sending. Only an approved issue is published or scheduled while review is required."""

    DRAFT = "draft"  # being written; not yet submitted
    IN_REVIEW = "in_review"  # submitted (送审), waiting for a reviewer
    RETURNED = "returned"  # sent back with a comment (退回修改)
    APPROVED = "approved"  # signed off (审核通过); any edit returns it to draft


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # planned, waiting for a worker
    SENDING = "sending"  # claimed by a worker until its lease expires
    SENT = "sent"  # the server answered 250
    FAILED = "failed"  # refused for good, or retries ran out
    UNKNOWN = "unknown"  # connection lost after DATA: maybe delivered, never resent by itself
    SKIPPED = "skipped"  # the reader left between planning and sending


class ImportStatus(enum.StrEnum):
    """A readers CSV import's life: checked first (the dry run), imported when staff say so."""

    CHECKING = "checking"  # the dry run is queued or running: nothing changes
    CHECKED = "checked"  # the dry run's report is ready; staff decide
    IMPORTING = "importing"  # the real run is queued or running
    DONE = "done"
    FAILED = "failed"  # the file cannot be read at all, or the task broke (`error`)


class StaffRole(enum.StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    REVIEWER = "reviewer"  # an editor who may also approve or return issues (admins may too)


subscriber_topics = Table(
    "subscriber_topics",
    db.metadata,
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("topic_id", ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True),
    # The primary key leads with subscriber_id; "readers of this section" (planning a send,
    # the staff list filtered by section, counts per section) needs the other order.
    Index("ix_subscriber_topics_topic_subscriber", "topic_id", "subscriber_id"),
)


class Topic(db.Model):
    """A section of the bulletin that readers choose, e.g. 质量要闻."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Shown on English pages and in English emails; the Chinese name when there is none.
    name_en: Mapped[str | None] = mapped_column(String(100), nullable=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    def __repr__(self) -> str:
        return f"<Topic {self.slug}>"


class Subscriber(db.Model):
    """A reader. `email` is stored lower-cased, which makes it unique case-insensitively.

    The consent columns are the evidence of how and when the reader agreed to receive the
    bulletin; they are NULL for readers recorded before the evidence was kept.
    """

    __tablename__ = "subscribers"
    __table_args__ = (
        # The staff list pages by id within a status ("active, newest first"); planning a send
        # looks up the active readers. One index serves both.
        Index("ix_subscribers_status_id", "status", "id"),
        # Staff search by any part of the address or the name (LIKE '%...%'): trigram
        # indexes on PostgreSQL. SQLite has no such index and scans, which is quick at its
        # sizes; POSTGRESQL_ONLY tells the schema check not to look for them there.
        Index(
            "ix_subscribers_email_trgm",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
            info=POSTGRESQL_ONLY,
        ),
        Index(
            "ix_subscribers_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
            info=POSTGRESQL_ONLY,
        ),
        # SQLite would otherwise hand an erased reader's id to the next sign-up (it reuses the
        # highest id), and links naming that id would reach a stranger. PostgreSQL's sequences
        # never reuse a number.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # Signed into every link to this reader (see tokens.reader_payload), so a link dies with
    # the reader and can be revoked by giving them a new key.
    link_key: Mapped[str] = mapped_column(String(32), default=new_link_key)
    name: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[SubscriberStatus] = mapped_column(
        _status(SubscriberStatus), default=SubscriberStatus.PENDING
    )
    locale: Mapped[str] = mapped_column(String(10), default="zh")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    consented_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    consent_ip: Mapped[str | None] = mapped_column(String(45))  # the longest IPv6 text form
    consent_user_agent: Mapped[str | None] = mapped_column(String(300))
    consent_source: Mapped[str | None] = mapped_column(String(200))  # "web-form v1", "cli import"
    consent_method: Mapped[ConsentMethod | None] = mapped_column(_status(ConsentMethod))
    # At most one confirmation email per address per day, however often the form is sent.
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Soft bounces (4.x.x DSNs) since the last delivery that got through; past a threshold
    # the address is treated as a hard bounce.
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    topics: Mapped[list[Topic]] = relationship(secondary=subscriber_topics, order_by=Topic.position)

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.status}>"


class Issue(db.Model):
    """One number of the bulletin: a title, a period, and articles grouped by topic."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    # The inbox's subject line and preview text; empty means "from the pattern" and "from
    # the titles" (see `issues.issue_subject` and `rendering`).
    subject: Mapped[str] = mapped_column(String(300), default="", server_default="")
    preheader: Mapped[str] = mapped_column(String(300), default="", server_default="")
    number: Mapped[int | None] = mapped_column(Integer)  # 第N期, counted within `year`
    year: Mapped[int | None] = mapped_column(Integer)
    total_number: Mapped[int | None] = mapped_column(Integer)  # 总第N期, across the years
    period: Mapped[str] = mapped_column(String(100), default="")
    # full | leads | auto: how much of each article a digest carries (see rendering.py).
    content_mode: Mapped[str] = mapped_column(String(10), default="auto")
    status: Mapped[IssueStatus] = mapped_column(
        _status(IssueStatus), default=IssueStatus.DRAFT, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Why sending stopped, for staff: "paused by x", or the SMTP server's 5.7.x answer.
    pause_reason: Mapped[str] = mapped_column(String(500), default="", server_default="")
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    review_stage: Mapped[ReviewStage] = mapped_column(
        _status(ReviewStage), default=ReviewStage.DRAFT, server_default="draft"
    )
    review_comment: Mapped[str] = mapped_column(String(1000), default="", server_default="")
    submitted_by: Mapped[str] = mapped_column(String(320), default="", server_default="")
    reviewed_by: Mapped[str] = mapped_column(String(320), default="", server_default="")
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    articles: Mapped[list[Article]] = relationship(
        back_populates="issue", order_by="Article.position", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Issue {self.id} {self.status}>"


class Article(db.Model):
    __tablename__ = "articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    title: Mapped[str] = mapped_column(String(300))
    source_name: Mapped[str] = mapped_column(String(300), default="")
    source_url: Mapped[str] = mapped_column(String(2000), default="")
    body: Mapped[str] = mapped_column(Text, default="")  # Markdown
    lead: Mapped[str] = mapped_column(Text, default="")

    issue: Mapped[Issue] = relationship(back_populates="articles")
    topic: Mapped[Topic] = relationship()


class DeletedArticle(db.Model):
    """An article staff deleted, kept so it can be restored while its issue is a draft."""

    __tablename__ = "deleted_articles"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    source_name: Mapped[str] = mapped_column(String(300))
    source_url: Mapped[str] = mapped_column(String(2000))
    body: Mapped[str] = mapped_column(Text)
    lead: Mapped[str] = mapped_column(Text)
    deleted_by: Mapped[str] = mapped_column(String(320))
    deleted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class Delivery(db.Model):
    """What happened to one issue for one reader: the never-twice ledger."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        # "Rows of this issue in this status" (progress, the finishing check), and in id
        # order for queueing them page by page (see delivery.due_rows_query).
        Index("ix_deliveries_issue_status_id", "issue_id", "status", "id"),
        # The sweeper's question: which claimed rows' leases have run out?
        Index("ix_deliveries_status_lease", "status", "lease_expires_at"),
        # The sending page's rate (polled every second): an issue's first and last answer
        # and the answers of the last 30 s, without reading the issue's million rows.
        Index("ix_deliveries_issue_sent_at", "issue_id", "sent_at"),
        # The sending page's log, an issue's rows in id order a page at a time: without it
        # the newest issue's first page read every older issue's rows (4.6 s at 10 x 1M).
        Index("ix_deliveries_issue_id", "issue_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[DeliveryStatus] = mapped_column(
        _status(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_reply: Mapped[str] = mapped_column(String(1000), default="")
    message_id: Mapped[str] = mapped_column(String(300), default="")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Written by each claim (a fencing token): every later change to a claimed row is
    # conditional on it, so nobody acts on a claim that is no longer theirs.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    # When a batch task was last queued for this row: a pending row queued long ago lost its
    # task (Redis restarted, say), and the sweeper queues it again.
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # After a temporary failure: not before this time (exponential backoff).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    issue: Mapped[Issue] = relationship()
    subscriber: Mapped[Subscriber] = relationship()


class RenderedDigest(db.Model):
    """An issue rendered for one set of sections and one language, ready to personalize.

    Rendered once when sending starts and shared by every worker, so premailer runs once per
    (issue, set of sections, language) however many workers and batches there are, and
    every reader of a set gets the same bytes even if the issue is edited later.
    """

    __tablename__ = "rendered_digests"
    __table_args__ = (UniqueConstraint("issue_id", "topics", "locale"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    topics: Mapped[str] = mapped_column(String(500))  # sorted topic ids: "1,3,4"
    locale: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    full_article_ids: Mapped[str] = mapped_column(String(2000), default="")
    html_size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SubscriberEvent(db.Model):
    """One change to a reader, for the reader's own export and for staff.

    `detail` never holds the address, the name or other personal data, so that when a reader
    is erased their events can stay (anonymous, `subscriber_id` NULL) for the statistics.
    """

    __tablename__ = "subscriber_events"
    __table_args__ = (
        Index("ix_subscriber_events_subscriber_created", "subscriber_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    kind: Mapped[EventKind] = mapped_column(_status(EventKind))
    source: Mapped[str] = mapped_column(String(20))  # an EventSource value
    detail: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)

    def __repr__(self) -> str:
        return f"<SubscriberEvent {self.id} {self.kind} {self.subscriber_id}>"


class Suppression(db.Model):
    """An address that must never be mailed or signed up again, kept only as a hash.

    `email_hash` is the SHA-256 hex digest of the lower-cased, normalized address: enough to
    recognise the address when it comes back, without storing it.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(_status(SuppressionReason))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AuditEntry(db.Model):
    """Who did what to which issue (or section, or reader list), and when."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_issue_created", "issue_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The address is kept as text so the entry survives the account's deletion.
    staff_email: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(40))  # "publish", "pause", "edit-article"...
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issues.id", ondelete="SET NULL"), nullable=True
    )
    detail: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class SubscriberImport(db.Model):
    """A readers CSV upload and its background import: the file itself (in the database, so
    any worker machine can read it), its progress and its reports.

    `dry_report` and `report` are the JSON counts of the dry run and the real run; `outcomes`
    is the latest run's per-row outcome (gzipped JSON lines, see subscriber_imports.py).
    """

    __tablename__ = "subscriber_imports"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_by: Mapped[str] = mapped_column(String(320))
    filename: Mapped[str] = mapped_column(String(255), default="")
    consented: Mapped[bool] = mapped_column(default=False)
    status: Mapped[ImportStatus] = mapped_column(
        _status(ImportStatus), default=ImportStatus.CHECKING
    )
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # dropped once imported
    size: Mapped[int] = mapped_column(Integer, default=0)
    rows_total: Mapped[int] = mapped_column(Integer, default=0)  # lines, then readers
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    # The run that owns the job now (each run claims it; see subscriber_imports.run), and
    # the confirmation emails its committed chunks claimed, for a run that resumes.
    run_token: Mapped[str | None] = mapped_column(String(32))
    confirmations_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dry_report: Mapped[str] = mapped_column(Text, default="")
    report: Mapped[str] = mapped_column(Text, default="")
    outcomes: Mapped[bytes | None] = mapped_column(LargeBinary)
    error: Mapped[str] = mapped_column(String(500), default="")  # a stored reason
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ReadCount(db.Model):
    """How often, in one hour, links of one kind to one article were followed (or a page of
    an issue read): counts only, nothing about who.

    `article_id` 0 stands for the issue's own web page. `filtered` counts the requests left
    out as link scanners or prefetchers (see readership.is_scanner).
    """

    __tablename__ = "read_counts"

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    # Not a foreign key: 0 is the issue page, and a sent issue's articles never go away.
    article_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # a readership.LinkKind
    hour: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    counted: Mapped[int] = mapped_column(Integer, default=0)
    filtered: Mapped[int] = mapped_column(Integer, default=0)


class ReadCountFlush(db.Model):
    """A batch of counters moved from Redis, written in the same transaction as its counts,
    so a flush that dies after committing is not written twice (see readership.flush)."""

    __tablename__ = "read_count_flushes"

    batch: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class BulkChangeStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class BulkChange(db.Model):
    """A change staff made to every reader matching a filter (unsubscribe, add or remove a
    section), and how far it has got: a worker runs large ones, a chunk at a time."""

    __tablename__ = "bulk_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(20))  # a bulk.BulkAction value
    topic_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id", ondelete="SET NULL"))
    # The filter as JSON ({"search", "status", "topic_id", "locale"}), and the highest reader
    # id it matched when staff confirmed: readers who sign up later are not included.
    filters: Mapped[str] = mapped_column(String(1000), default="{}")
    upto_id: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[BulkChangeStatus] = mapped_column(
        _status(BulkChangeStatus), default=BulkChangeStatus.QUEUED
    )
    total: Mapped[int] = mapped_column(Integer, default=0)  # matching when confirmed
    done: Mapped[int] = mapped_column(Integer, default=0)  # readers gone through
    changed: Mapped[int] = mapped_column(Integer, default=0)  # of those, readers it changed
    # The last reader id gone through (readers are taken by descending id): a retried task
    # carries on from here.
    cursor_id: Mapped[int | None] = mapped_column(Integer)
    staff_email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class TopicRecipients(db.Model):
    """How many readers an issue was planned for in each of its sections, counted when it
    was published (readers change sections later; the report's rates need the count then)."""

    __tablename__ = "topic_recipients"

    issue_id: Mapped[int] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True
    )
    recipients: Mapped[int] = mapped_column(Integer, default=0)


class SectionDepartures(db.Model):
    """How many readers stopped a section in one hour: counted as they leave (see
    readership.count_departures), so the readership report sums at most 168 rows a section
    for an issue's week instead of reading the events log and every leaver's sections.

    `topic_id` 0 counts the readers who left altogether (each of whom also counts for each
    section they had). Counts only, nothing about who.
    """

    __tablename__ = "section_departures"

    # Not a foreign key: 0 is "left altogether", and a deleted section's history may stay.
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    readers: Mapped[int] = mapped_column(Integer, default=0)


class Setting(db.Model):
    """A site setting staff change on /admin/settings; the value is JSON text.

    Only settings named in `site_settings.SETTINGS` are stored; one that has no row takes its
    default from the configuration (the environment).
    """

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    # Who changed it last, as text so the row survives the account's deletion.
    updated_by: Mapped[str] = mapped_column(String(320), default="")


class SiteImage(db.Model):
    """An image staff uploaded for the whole site (the logo), in the database so that every
    web machine serves the same one. Kept in two sizes: `web` for pages and link cards,
    `email` for the email masthead at twice its display size (retina screens)."""

    __tablename__ = "site_images"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)  # "logo"
    alt: Mapped[str] = mapped_column(String(200))
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the upload: the ETag
    web_type: Mapped[str] = mapped_column(String(50))  # image/png or image/jpeg
    web_data: Mapped[bytes] = mapped_column(LargeBinary)
    web_width: Mapped[int] = mapped_column(Integer)
    web_height: Mapped[int] = mapped_column(Integer)
    email_type: Mapped[str] = mapped_column(String(50))
    email_data: Mapped[bytes] = mapped_column(LargeBinary)
    email_width: Mapped[int] = mapped_column(Integer)  # pixels; shown at half
    email_height: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str] = mapped_column(String(320), default="")


class StaffUser(UserMixin, db.Model):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[StaffRole] = mapped_column(_status(StaffRole), default=StaffRole.EDITOR)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Part of the id kept in the session cookie: bumping it (sign-out, new password,
    # deactivation) makes every cookie issued before worthless, even a copied one.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return self.active

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"


class ApiTokenRole(enum.StrEnum):
    """What an API token may do: the rights of the staff pages, by role (see api/auth.py)."""

    READ_ONLY = "read-only"  # what an editor may see, and no changes
    EDITOR = "editor"  # an editor's pages: issues, review submissions, sending
    ADMIN = "admin"  # everything, readers' addresses included


class ApiToken(db.Model):
    """A named credential for the JSON API. Only the SHA-256 of the secret is kept: the
    secret is shown once, when the token is made (see api_tokens.py)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[ApiTokenRole] = mapped_column(_status(ApiTokenRole))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the secret, so staff can tell their tokens apart.
    prefix: Mapped[str] = mapped_column(String(12))
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Webhook(db.Model):
    """A URL told about events (`events`: space-separated names from webhooks.EVENTS)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(500))
    # The HMAC key: kept as it is, since every delivery is signed with it.
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class WebhookDeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # written with the event, waiting for (or between) attempts
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # retries ran out


class WebhookDelivery(db.Model):
    """One event for one webhook: the outbox row written with the change, then the log of
    what the receiver answered."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_webhook_id", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, exactly as signed and sent
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        _status(WebhookDeliveryStatus), default=WebhookDeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_status: Mapped[int | None] = mapped_column(Integer)
    # The receiver's answer (its start), or why there was none (a timeout, a refused connection).
    response_body: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class ReaderCount(db.Model):
    """How many readers are in a status (`topic_id` 0) or in a status and a section: kept by
    database triggers (migration 0022) in the transaction of every change, so exact whichever
    path changed the readers. The current count is this row plus the change rows not yet
    added in (see counters.py). Counts only, nothing about who.
    """

    __tablename__ = "reader_counts"

    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    # Not a foreign key: 0 is "all readers", and a deleted section's count simply goes to 0.
    topic_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    readers: Mapped[int] = mapped_column(BigInteger)


class ReaderCountChange(db.Model):
    """One change's effect on a `ReaderCount`, written by the triggers; writers only insert
    these, so they never wait on one another for a counter row."""

    __tablename__ = "reader_count_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    topic_id: Mapped[int] = mapped_column(Integer)
    change: Mapped[int] = mapped_column(BigInteger)


class DeliveryCount(db.Model):
    """How many of an issue's deliveries are in a status: kept like `ReaderCount` by
    triggers on deliveries (migration 0022), for the sending page's progress and the
    dashboard, which counted an issue's million rows per view."""

    __tablename__ = "delivery_counts"

    # Not a foreign key: rows are only ever added to, and a deleted issue's counts go to 0.
    issue_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    deliveries: Mapped[int] = mapped_column(BigInteger)


class DeliveryCountChange(db.Model):
    """One statement's effect on an issue's `DeliveryCount`s, written by the triggers."""

    __tablename__ = "delivery_count_changes"
    __table_args__ = (Index("ix_delivery_count_changes_issue_id", "issue_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    change: Mapped[int] = mapped_column(BigInteger)


class EventDayCount(db.Model):
    """How many readers' events of a kind and source fell on a UTC day: kept like
    `ReaderCount` by triggers on subscriber_events (migration 0023), for the dashboard's
    chart, which grouped the 90 days' events (a quarter of a million) per view."""

    __tablename__ = "event_day_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)  # an EventKind value
    source: Mapped[str] = mapped_column(String(20), primary_key=True)  # an EventSource value
    events: Mapped[int] = mapped_column(BigInteger)


class EventDayCountChange(db.Model):
    """One statement's effect on the `EventDayCount`s, written by the triggers."""

    __tablename__ = "event_day_count_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    change: Mapped[int] = mapped_column(BigInteger)
