"""subscriber_imports: a fencing token per run, and the confirmations claimed so far

A readers import whose worker died (or stalled past the broker's visibility timeout) is run
again by another worker. `run_token` is claimed by each run and checked by every commit of
its progress, so that a run that was taken over stops before writing anything more.
`confirmations_sent` counts, in the same transactions as the chunks, the confirmation emails
the import's committed chunks claimed, so that a run that resumes reports them too.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 01:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriber_imports") as batch:
        batch.add_column(sa.Column("run_token", sa.String(length=32), nullable=True))
        batch.add_column(
            sa.Column("confirmations_sent", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade():
    with op.batch_alter_table("subscriber_imports") as batch:
        batch.drop_column("confirmations_sent")
        batch.drop_column("run_token")
