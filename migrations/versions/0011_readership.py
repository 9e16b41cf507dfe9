"""readership: aggregate click and page-view counts per hour, their flush ledger, and each
section's recipients per issue

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 02:45:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "read_counts",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counted", sa.Integer(), nullable=False),
        sa.Column("filtered", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_read_counts_issue_id_issues"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "issue_id", "article_id", "kind", "hour", name=op.f("pk_read_counts")
        ),
    )
    op.create_table(
        "read_count_flushes",
        sa.Column("batch", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("batch", name=op.f("pk_read_count_flushes")),
    )
    op.create_table(
        "topic_recipients",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_topic_recipients_issue_id_issues"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_recipients_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("issue_id", "topic_id", name=op.f("pk_topic_recipients")),
    )


def downgrade():
    op.drop_table("topic_recipients")
    op.drop_table("read_count_flushes")
    op.drop_table("read_counts")
