"""issues: subject line, preheader, year and overall number

An issue's subject and preheader were derived from its title, so every month went out with
the same subject. `number` (第N期) already existed; it is counted within `year`, and
`total_number` (总第N期) across all years.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 02:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("subject", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("preheader", sa.String(length=300), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("year", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("total_number", sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_column("total_number")
        batch_op.drop_column("year")
        batch_op.drop_column("preheader")
        batch_op.drop_column("subject")
