"""reader_counts: readers per status and per (status, section), kept by triggers

The dashboard, the readers list and the sections page counted the whole of subscribers and
subscriber_topics on every view (1.3 s for the dashboard at 1,000,000 readers). Database
triggers now write each change's effect on the counts into `reader_count_changes` in the
same transaction as the change, whichever path made it (the ORM, the set-based `*_many`
functions, the CSV import's bulk writes, a cascade): the counts are exact and consistent.
Writers only ever insert change rows, so they never wait on each other for a hot counter row
(and cannot deadlock on one); `reader_counts.fold()` adds the change rows into
`reader_counts` (the sweeper does, every SWEEP_SECONDS) and a read sums both.

On PostgreSQL the triggers are per statement with transition tables, so a bulk change of a
million readers writes a handful of change rows; on SQLite they are per row.

`topic_id` 0 is "all readers" (a status's total); sections start at 1.

The same for deliveries by (issue, status): the sending page's progress (polled every second
while sending) and the dashboard's figures per issue counted an issue's million rows per
view; `delivery_counts` with `delivery_count_changes` keep them the same way. And an index
on deliveries (issue_id, sent_at) for the sending page's rate, which read every row of the
issue for its first and last answer; and on (issue_id, id) for the sending page's log, whose
first page of the newest issue read every older issue's rows in id order.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 07:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

DELIVERIES_POSTGRESQL = [
    """
    CREATE FUNCTION delivery_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO delivery_count_changes (issue_id, status, change)
        SELECT issue_id, status, count(*) FROM new_rows GROUP BY issue_id, status;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION delivery_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO delivery_count_changes (issue_id, status, change)
        SELECT issue_id, status, -count(*) FROM old_rows GROUP BY issue_id, status;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION delivery_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO delivery_count_changes (issue_id, status, change)
        SELECT issue_id, status, sum(change) FROM (
            SELECT issue_id, status, -1 AS change FROM old_rows
            UNION ALL
            SELECT issue_id, status, 1 FROM new_rows
        ) moved GROUP BY issue_id, status HAVING sum(change) <> 0;
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER delivery_counts_added AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION delivery_counts_added()""",
    """CREATE TRIGGER delivery_counts_removed AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION delivery_counts_removed()""",
    """CREATE TRIGGER delivery_counts_changed AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION delivery_counts_changed()""",
]

DELIVERIES_SQLITE = [
    """CREATE TRIGGER delivery_counts_added AFTER INSERT ON deliveries BEGIN
        INSERT INTO delivery_count_changes (issue_id, status, change)
        VALUES (NEW.issue_id, NEW.status, 1);
    END""",
    """CREATE TRIGGER delivery_counts_removed AFTER DELETE ON deliveries BEGIN
        INSERT INTO delivery_count_changes (issue_id, status, change)
        VALUES (OLD.issue_id, OLD.status, -1);
    END""",
    """CREATE TRIGGER delivery_counts_changed AFTER UPDATE OF issue_id, status ON deliveries
    WHEN OLD.status <> NEW.status OR OLD.issue_id <> NEW.issue_id BEGIN
        INSERT INTO delivery_count_changes (issue_id, status, change)
        VALUES (OLD.issue_id, OLD.status, -1), (NEW.issue_id, NEW.status, 1);
    END""",
]

POSTGRESQL = [
    # A reader's sections count under their status: the change rows join subscribers.
    """
    CREATE FUNCTION reader_counts_topics_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT s.status, n.topic_id, count(*)
        FROM new_rows n JOIN subscribers s ON s.id = n.subscriber_id
        GROUP BY s.status, n.topic_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION reader_counts_topics_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT s.status, o.topic_id, -count(*)
        FROM old_rows o JOIN subscribers s ON s.id = o.subscriber_id
        GROUP BY s.status, o.topic_id;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION reader_counts_topics_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT status, topic_id, sum(change) FROM (
            SELECT s.status, o.topic_id, -1 AS change
            FROM old_rows o JOIN subscribers s ON s.id = o.subscriber_id
            UNION ALL
            SELECT s.status, n.topic_id, 1
            FROM new_rows n JOIN subscribers s ON s.id = n.subscriber_id
        ) moved GROUP BY status, topic_id HAVING sum(change) <> 0;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION reader_counts_readers_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT status, 0, count(*) FROM new_rows GROUP BY status;
        RETURN NULL;
    END $$
    """,
    # A status change moves the reader and each of their sections.
    """
    CREATE FUNCTION reader_counts_readers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        WITH changed AS (
            SELECT o.id, o.status AS was, n.status AS now
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE o.status <> n.status
        ), moves AS (
            SELECT c.id, 0 AS topic_id, c.was, c.now FROM changed c
            UNION ALL
            SELECT c.id, st.topic_id, c.was, c.now
            FROM changed c JOIN subscriber_topics st ON st.subscriber_id = c.id
        )
        SELECT status, topic_id, sum(change) FROM (
            SELECT was AS status, topic_id, -1 AS change FROM moves
            UNION ALL
            SELECT now, topic_id, 1 FROM moves
        ) m GROUP BY status, topic_id;
        RETURN NULL;
    END $$
    """,
    # Before the row goes: its sections are removed first (counted by the trigger above,
    # while the reader's status can still be read), then the reader.
    """
    CREATE FUNCTION reader_counts_reader_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM subscriber_topics WHERE subscriber_id = OLD.id;
        INSERT INTO reader_count_changes (status, topic_id, change) VALUES (OLD.status, 0, -1);
        RETURN OLD;
    END $$
    """,
    """CREATE TRIGGER reader_counts_topics_added AFTER INSERT ON subscriber_topics
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION reader_counts_topics_added()""",
    """CREATE TRIGGER reader_counts_topics_removed AFTER DELETE ON subscriber_topics
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION reader_counts_topics_removed()""",
    """CREATE TRIGGER reader_counts_topics_moved AFTER UPDATE ON subscriber_topics
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION reader_counts_topics_moved()""",
    """CREATE TRIGGER reader_counts_readers_added AFTER INSERT ON subscribers
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION reader_counts_readers_added()""",
    """CREATE TRIGGER reader_counts_readers_changed AFTER UPDATE ON subscribers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION reader_counts_readers_changed()""",
    """CREATE TRIGGER reader_counts_reader_removed BEFORE DELETE ON subscribers
    FOR EACH ROW EXECUTE FUNCTION reader_counts_reader_removed()""",
]

SQLITE = [
    """CREATE TRIGGER reader_counts_topics_added AFTER INSERT ON subscriber_topics BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT status, NEW.topic_id, 1 FROM subscribers WHERE id = NEW.subscriber_id;
    END""",
    """CREATE TRIGGER reader_counts_topics_removed AFTER DELETE ON subscriber_topics BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT status, OLD.topic_id, -1 FROM subscribers WHERE id = OLD.subscriber_id;
    END""",
    """CREATE TRIGGER reader_counts_topics_moved AFTER UPDATE ON subscriber_topics BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT status, OLD.topic_id, -1 FROM subscribers WHERE id = OLD.subscriber_id;
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT status, NEW.topic_id, 1 FROM subscribers WHERE id = NEW.subscriber_id;
    END""",
    """CREATE TRIGGER reader_counts_readers_added AFTER INSERT ON subscribers BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change) VALUES (NEW.status, 0, 1);
    END""",
    """CREATE TRIGGER reader_counts_readers_changed AFTER UPDATE OF status ON subscribers
    WHEN OLD.status <> NEW.status BEGIN
        INSERT INTO reader_count_changes (status, topic_id, change)
        VALUES (OLD.status, 0, -1), (NEW.status, 0, 1);
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT OLD.status, topic_id, -1 FROM subscriber_topics WHERE subscriber_id = NEW.id;
        INSERT INTO reader_count_changes (status, topic_id, change)
        SELECT NEW.status, topic_id, 1 FROM subscriber_topics WHERE subscriber_id = NEW.id;
    END""",
    """CREATE TRIGGER reader_counts_reader_removed BEFORE DELETE ON subscribers BEGIN
        DELETE FROM subscriber_topics WHERE subscriber_id = OLD.id;
        INSERT INTO reader_count_changes (status, topic_id, change) VALUES (OLD.status, 0, -1);
    END""",
]

TRIGGERS = [
    ("reader_counts_topics_added", "subscriber_topics"),
    ("reader_counts_topics_removed", "subscriber_topics"),
    ("reader_counts_topics_moved", "subscriber_topics"),
    ("reader_counts_readers_added", "subscribers"),
    ("reader_counts_readers_changed", "subscribers"),
    ("reader_counts_reader_removed", "subscribers"),
    ("delivery_counts_added", "deliveries"),
    ("delivery_counts_removed", "deliveries"),
    ("delivery_counts_changed", "deliveries"),
]


def upgrade():
    op.create_table(
        "reader_counts",
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("readers", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", "topic_id", name=op.f("pk_reader_counts")),
    )
    op.create_table(
        "reader_count_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("change", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reader_count_changes")),
    )
    op.create_table(
        "delivery_counts",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("deliveries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "status", name=op.f("pk_delivery_counts")),
    )
    op.create_table(
        "delivery_count_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("change", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_count_changes")),
    )
    op.create_index("ix_delivery_count_changes_issue_id", "delivery_count_changes", ["issue_id"])
    op.create_index("ix_deliveries_issue_sent_at", "deliveries", ["issue_id", "sent_at"])
    op.create_index("ix_deliveries_issue_id", "deliveries", ["issue_id", "id"])
    bind = op.get_bind()
    # Counted and triggered in one transaction (Alembic runs each migration in one on both
    # databases), so no change falls between the count and the first trigger.
    if bind.dialect.name == "postgresql":
        op.execute("LOCK TABLE subscribers, subscriber_topics, deliveries IN SHARE MODE")
    op.execute(
        "INSERT INTO reader_counts (status, topic_id, readers) "
        "SELECT status, 0, count(*) FROM subscribers GROUP BY status"
    )
    op.execute(
        "INSERT INTO reader_counts (status, topic_id, readers) "
        "SELECT s.status, st.topic_id, count(*) FROM subscriber_topics st "
        "JOIN subscribers s ON s.id = st.subscriber_id GROUP BY s.status, st.topic_id"
    )
    op.execute(
        "INSERT INTO delivery_counts (issue_id, status, deliveries) "
        "SELECT issue_id, status, count(*) FROM deliveries GROUP BY issue_id, status"
    )
    if bind.dialect.name == "postgresql":
        statements = POSTGRESQL + DELIVERIES_POSTGRESQL
    else:
        statements = SQLITE + DELIVERIES_SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table in TRIGGERS:
        op.execute(f"DROP TRIGGER {name} ON {table}" if postgresql else f"DROP TRIGGER {name}")
        if postgresql:
            op.execute(f"DROP FUNCTION {name}()")
    op.drop_index("ix_deliveries_issue_sent_at", table_name="deliveries")
    op.drop_index("ix_deliveries_issue_id", table_name="deliveries")
    op.drop_table("delivery_count_changes")
    op.drop_table("delivery_counts")
    op.drop_table("reader_count_changes")
    op.drop_table("reader_counts")
