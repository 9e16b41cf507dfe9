"""delivery engine: pause, retries, requeue, soft bounces

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 04:02:56.519347

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_deliveries_status_lease", ["status", "lease_expires_at"], unique=False
        )

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pause_reason", sa.String(length=500), server_default="", nullable=False)
        )

    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("soft_bounces", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("soft_bounces")

    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_column("pause_reason")

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_status_lease")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("queued_at")
