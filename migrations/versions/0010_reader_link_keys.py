"""readers get a random link key; SQLite never reuses a reader's id

Links named only the reader's id, and SQLite reuses the highest id after a delete: an erased
reader's links then reached the next person to sign up. Every link now also carries the
reader's random key, and on SQLite the table is rebuilt with AUTOINCREMENT.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 02:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("link_key", sa.String(length=32), nullable=True))
    # 128 random bits per existing reader, from the database's own generator: gen_random_uuid()
    # (PostgreSQL 13+) and randomblob() both draw on a cryptographic source.
    if sqlite:
        op.execute("UPDATE subscribers SET link_key = lower(hex(randomblob(16)))")
    else:
        op.execute("UPDATE subscribers SET link_key = replace(gen_random_uuid()::text, '-', '')")
    # On SQLite this rebuilds the table (copying every row, ids kept) with AUTOINCREMENT; the
    # migration environment turns foreign keys off meanwhile, so dropping the old table does
    # not cascade to the readers' sections and deliveries.
    with op.batch_alter_table(
        "subscribers",
        schema=None,
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True},
    ) as batch_op:
        batch_op.alter_column("link_key", existing_type=sa.String(length=32), nullable=False)


def downgrade():
    with op.batch_alter_table("subscribers", schema=None) as batch_op:
        batch_op.drop_column("link_key")
