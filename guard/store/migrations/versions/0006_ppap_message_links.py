"""Linked messages (a PPAP password mail and its encrypted-attachment mail). The
password mail's lookup of the sender's recent mail uses 0005's ix_messages_sender_received.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_links",
        sa.Column("message_id", sa.String(32),
                  sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("linked_to", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_message_links_linked_to", "message_links", ["linked_to"])


def downgrade() -> None:
    op.drop_index("ix_message_links_linked_to", "message_links")
    op.drop_table("message_links")
