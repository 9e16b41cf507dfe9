"""site_images: the logo staff upload, in the database so every web machine serves it

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 05:30:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "site_images",
        sa.Column("key", sa.String(length=50), nullable=False),
        sa.Column("alt", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("web_type", sa.String(length=50), nullable=False),
        sa.Column("web_data", sa.LargeBinary(), nullable=False),
        sa.Column("web_width", sa.Integer(), nullable=False),
        sa.Column("web_height", sa.Integer(), nullable=False),
        sa.Column("email_type", sa.String(length=50), nullable=False),
        sa.Column("email_data", sa.LargeBinary(), nullable=False),
        sa.Column("email_width", sa.Integer(), nullable=False),
        sa.Column("email_height", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_site_images")),
    )


def downgrade():
    op.drop_table("site_images")
