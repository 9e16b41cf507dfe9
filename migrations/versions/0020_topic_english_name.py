"""topics.name_en: a section's English name, shown on English pages and in English emails

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01 05:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable: a section without one shows its Chinese name in English too.
    with op.batch_alter_table("topics") as batch_op:
        batch_op.add_column(sa.Column("name_en", sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table("topics") as batch_op:
        batch_op.drop_column("name_en")
