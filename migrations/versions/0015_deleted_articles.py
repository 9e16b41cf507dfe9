"""deleted_articles: an article staff deleted from a draft, kept so it can be restored

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 03:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "deleted_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("source_name", sa.String(length=300), nullable=False),
        sa.Column("source_url", sa.String(length=2000), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("lead", sa.Text(), nullable=False),
        sa.Column("deleted_by", sa.String(length=320), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["issue_id"],
            ["issues.id"],
            name=op.f("fk_deleted_articles_issue_id_issues"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name=op.f("fk_deleted_articles_topic_id_topics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deleted_articles")),
    )
    with op.batch_alter_table("deleted_articles", schema=None) as batch_op:
        batch_op.create_index("ix_deleted_articles_issue_id", ["issue_id"], unique=False)


def downgrade():
    with op.batch_alter_table("deleted_articles", schema=None) as batch_op:
        batch_op.drop_index("ix_deleted_articles_issue_id")
    op.drop_table("deleted_articles")
