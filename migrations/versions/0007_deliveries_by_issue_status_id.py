"""deliveries indexed by (issue, status, id)

Queueing reads pending rows page by page in id order; with (issue_id, status) alone and no
statistics yet (right after planning), PostgreSQL sorted every pending row for each page.
The new index serves everything the old one did.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 07:40:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_issue_status_id", ["issue_id", "status", "id"], unique=False
        )
        batch_op.drop_index("ix_deliveries_issue_status")


def downgrade():
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_issue_status", ["issue_id", "status"], unique=False)
        batch_op.drop_index("ix_deliveries_issue_status_id")
