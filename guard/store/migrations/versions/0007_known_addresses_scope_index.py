"""known_addresses indexed by scope and last_seen: the look-alike cache reloads the
org-wide addresses, most recent first, every 30 s on every instance; since 0005 the
table holds one row per address per sender, and without this index that reload read
all of it and sorted it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_known_addresses_scope_last_seen", "known_addresses",
                    ["scope", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_known_addresses_scope_last_seen", "known_addresses")
