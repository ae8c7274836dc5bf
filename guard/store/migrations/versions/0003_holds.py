"""The hold lifecycle: holds, approvals, used link-token nonces.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "holds",
        sa.Column("message_id", sa.String(32),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("notified_at", sa.Float, nullable=False),
        sa.Column("escalate_at", sa.Float),
        sa.Column("escalated_at", sa.Float),
        sa.Column("approvals_required", sa.Integer, nullable=False),
    )
    op.create_index("ix_holds_escalate", "holds", ["escalate_at"])
    op.create_table(
        "hold_approvals",
        sa.Column("message_id", sa.String(32),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("approver", sa.String(320), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "used_tokens",
        sa.Column("nonce", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("used_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_used_tokens_expires", "used_tokens", ["expires_at"])


def downgrade() -> None:
    op.drop_table("used_tokens")
    op.drop_table("hold_approvals")
    op.drop_table("holds")
