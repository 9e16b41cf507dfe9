"""staff session version: signing out, a new password or deactivation ends every session

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 04:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("staff_users") as batch:
        batch.add_column(
            sa.Column("session_version", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade():
    with op.batch_alter_table("staff_users") as batch:
        batch.drop_column("session_version")
