"""index events by time

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 04:38:21.921152

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriber_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_subscriber_events_created_kind", ["created_at", "kind"], unique=False
        )


def downgrade():
    with op.batch_alter_table("subscriber_events", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriber_events_created_kind")
