"""reader search by any part of address or name (trigram indexes on PostgreSQL), and the
bulk changes staff make to a filtered list of readers

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 05:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "bulk_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("filters", sa.String(length=1000), nullable=False),
        sa.Column("upto_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued", "running", "done", "failed",
                name="bulkchangestatus", native_enum=False, length=20,
            ),
            nullable=False,
        ),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("cursor_id", sa.Integer(), nullable=True),
        sa.Column("staff_email", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_bulk_changes_topic_id_topics"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_changes")),
    )  # fmt: skip
    if op.get_bind().dialect.name == "postgresql":
        # LIKE '%part%' on addresses and names. SQLite has no trigram index; it scans.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_subscribers_email_trgm ON subscribers USING gin (email gin_trgm_ops)"
        )
        op.execute(
            "CREATE INDEX ix_subscribers_name_trgm ON subscribers USING gin (name gin_trgm_ops)"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX ix_subscribers_name_trgm")
        op.execute("DROP INDEX ix_subscribers_email_trgm")
    op.drop_table("bulk_changes")
