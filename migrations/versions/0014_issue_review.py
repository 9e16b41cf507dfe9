"""issues: review stage (送审, 审核通过, 退回) and who reviewed it

An issue is submitted for review, then approved or returned with a comment; only an approved
issue may be published or scheduled while review is on (the review_required setting).
Issues that already exist start as drafts of review; those already sent are not affected.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 02:35:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("review_stage", sa.String(length=20), nullable=False, server_default="draft")
        )
        batch_op.add_column(
            sa.Column("review_comment", sa.String(length=1000), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("submitted_by", sa.String(length=320), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("reviewed_by", sa.String(length=320), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("issues", schema=None) as batch_op:
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("reviewed_by")
        batch_op.drop_column("submitted_by")
        batch_op.drop_column("review_comment")
        batch_op.drop_column("review_stage")
