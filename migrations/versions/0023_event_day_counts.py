"""event_day_counts: readers' events per UTC day, kind and source, kept by triggers

The dashboard's 90-day chart of sign-ups and unsubscribes, and its sign-ups by source,
grouped the window's events on every view (about 250,000 at a million readers: 400 ms).
Triggers on subscriber_events now write each insert's (and delete's) effect per day into
`event_day_count_changes`, in the same transaction; `counters.fold()` adds them into
`event_day_counts`, as it does for the reader and delivery counts of migration 0022, and a
read sums both over the window's days: at most a few hundred rows.

Events are only ever added (an erasure keeps them, without the reader's id), so there is no
update trigger; a delete trigger keeps the counts right should anything remove events.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 11:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# The UTC day of an event, as charts.utc_day computes it when it reads the events.
POSTGRESQL = [
    """
    CREATE FUNCTION event_day_counts_added() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO event_day_count_changes (day, kind, source, change)
        SELECT CAST(timezone('UTC', created_at) AS DATE), kind, source, count(*)
        FROM new_rows GROUP BY 1, 2, 3;
        RETURN NULL;
    END $$
    """,
    """
    CREATE FUNCTION event_day_counts_removed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO event_day_count_changes (day, kind, source, change)
        SELECT CAST(timezone('UTC', created_at) AS DATE), kind, source, -count(*)
        FROM old_rows GROUP BY 1, 2, 3;
        RETURN NULL;
    END $$
    """,
    """CREATE TRIGGER event_day_counts_added AFTER INSERT ON subscriber_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION event_day_counts_added()""",
    """CREATE TRIGGER event_day_counts_removed AFTER DELETE ON subscriber_events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION event_day_counts_removed()""",
]

SQLITE = [
    """CREATE TRIGGER event_day_counts_added AFTER INSERT ON subscriber_events BEGIN
        INSERT INTO event_day_count_changes (day, kind, source, change)
        VALUES (date(NEW.created_at), NEW.kind, NEW.source, 1);
    END""",
    """CREATE TRIGGER event_day_counts_removed AFTER DELETE ON subscriber_events BEGIN
        INSERT INTO event_day_count_changes (day, kind, source, change)
        VALUES (date(OLD.created_at), OLD.kind, OLD.source, -1);
    END""",
]

TRIGGERS = ["event_day_counts_added", "event_day_counts_removed"]


def upgrade():
    op.create_table(
        "event_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "kind", "source", name=op.f("pk_event_day_counts")),
    )
    op.create_table(
        "event_day_count_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("change", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_day_count_changes")),
    )
    # The chart's old index on events by time has no reader left.
    op.drop_index("ix_subscriber_events_created_kind", table_name="subscriber_events")
    bind = op.get_bind()
    # Counted and triggered in one transaction, so no event falls between the two.
    if bind.dialect.name == "postgresql":
        op.execute("LOCK TABLE subscriber_events IN SHARE MODE")
        day = "CAST(timezone('UTC', created_at) AS DATE)"
    else:
        day = "date(created_at)"
    op.execute(
        "INSERT INTO event_day_counts (day, kind, source, events) "
        f"SELECT {day}, kind, source, count(*) FROM subscriber_events GROUP BY 1, 2, 3"
    )
    for statement in POSTGRESQL if bind.dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(
            f"DROP TRIGGER {name} ON subscriber_events" if postgresql else f"DROP TRIGGER {name}"
        )
        if postgresql:
            op.execute(f"DROP FUNCTION {name}()")
    op.create_index(
        "ix_subscriber_events_created_kind", "subscriber_events", ["created_at", "kind"]
    )
    op.drop_table("event_day_count_changes")
    op.drop_table("event_day_counts")
