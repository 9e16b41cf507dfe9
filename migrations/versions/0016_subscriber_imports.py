"""subscriber_imports: a readers CSV upload, its background dry run and import, and reports

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 05:20:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "subscriber_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("consented", sa.Boolean(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "checking",
                "checked",
                "importing",
                "done",
                "failed",
                name="importstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_done", sa.Integer(), nullable=False),
        sa.Column("dry_report", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("outcomes", sa.LargeBinary(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_imports")),
    )


def downgrade():
    op.drop_table("subscriber_imports")
