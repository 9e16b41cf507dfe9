"""readers: consent evidence, subscriber events, suppressions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 03:27:18.400436

The new subscriber columns are nullable: readers recorded before this revision have no
consent evidence, and NULL says so rather than inventing it. The index on status alone
becomes (status, id), which serves the same lookups and also the staff list's keyset paging.
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "erased",
                "hard-bounce",
                "complaint",
                "staff",
                name="suppressionreason",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
        sa.UniqueConstraint("email_hash", name=op.f("uq_suppressions_email_hash")),
    )
    op.create_table(
        "subscriber_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "subscribed",
                "confirmed",
                "topics_changed",
                "unsubscribed",
                "resubscribed",
                "erased",
                "imported",
                "bounced",
                "complained",
                "profile_changed",
                name="eventkind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_subscriber_events_subscriber_id_subscribers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_events")),
    )
    with op.batch_alter_table("subscriber_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_events_subscriber_created", ["subscriber_id", "created_at"], unique=False
        )

    with op.batch_alter_table("subscriber_topics", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_topics_topic_subscriber", ["topic_id", "subscriber_id"], unique=False
        )

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("consent_ip", sa.String(length=45), nullable=True))
        batch_op.add_column(sa.Column("consent_user_agent", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("consent_source", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column(
                "consent_method",
                sa.Enum(
                    "double-opt-in",
                    "imported-consented",
                    name="consentmethod",
                    native_enum=False,
                    length=20,
                ),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("confirmation_sent_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.drop_index(batch_op.f("ix_subscribers_status"))
        batch_op.create_index("ix_subscribers_status_id", ["status", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_index("ix_subscribers_status_id")
        batch_op.create_index(batch_op.f("ix_subscribers_status"), ["status"], unique=False)
        batch_op.drop_column("confirmation_sent_at")
        batch_op.drop_column("consent_method")
        batch_op.drop_column("consent_source")
        batch_op.drop_column("consent_user_agent")
        batch_op.drop_column("consent_ip")
        batch_op.drop_column("consented_at")

    with op.batch_alter_table("subscriber_topics", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_topics_topic_subscriber")

    with op.batch_alter_table("subscriber_events", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_events_subscriber_created")

    op.drop_table("subscriber_events")
    op.drop_table("suppressions")
