"""deliveries carry the token of the claim that holds them

Every claim writes a fresh token; every later change to a claimed row (a flush of answers,
a lease renewal, a give-back, the sweeper's settlement) is conditional on it, so a late
sweep or a worker that lost its lease cannot touch rows that were claimed again since.
Rows in flight during the upgrade keep NULL, which the engine treats as one more token.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 02:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("claim_token")
