"""Known addresses per scope (org-wide "" and per sender, like known_domains) with their
source, for the new_address symbol and `guard history import`; messages indexed by
sender and time, for the sender_volume symbols' count.

Addresses known before this revision are org-wide and "delivered": who sent to them was
not recorded, so per-sender history of addresses starts with this revision.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a new primary key: a new table, the rows copied (SQLite cannot alter a key)
    op.create_table(
        "known_addresses_new",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("scope", sa.String(320), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
    )
    op.execute("INSERT INTO known_addresses_new (address, scope, first_seen, last_seen, source)"
               " SELECT address, '', first_seen, last_seen, 'delivered' FROM known_addresses")
    op.drop_table("known_addresses")
    op.rename_table("known_addresses_new", "known_addresses")
    op.create_index("ix_messages_sender_received", "messages", ["sender", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_sender_received", "messages")
    op.create_table(
        "known_addresses_old",
        sa.Column("address", sa.String(320), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.execute("INSERT INTO known_addresses_old (address, first_seen, last_seen)"
               " SELECT address, first_seen, last_seen FROM known_addresses WHERE scope = ''")
    op.drop_table("known_addresses")
    op.rename_table("known_addresses_old", "known_addresses")
