"""What the detectors learn: known domains and addresses, suppression lists.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_domains",
        sa.Column("domain", sa.String(255), primary_key=True),
        sa.Column("scope", sa.String(320), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.create_table(
        "known_addresses",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.create_table(
        "lists",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("imported_at", sa.Float, nullable=False),
    )
    op.create_table(
        "list_entries",
        sa.Column("list_name", sa.String(64),
                  sa.ForeignKey("lists.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("digest", sa.LargeBinary(32), primary_key=True),
    )
    op.create_index("ix_list_entries_digest", "list_entries", ["digest"])


def downgrade() -> None:
    op.drop_table("list_entries")
    op.drop_table("lists")
    op.drop_table("known_addresses")
    op.drop_table("known_domains")
