"""Suppression lists say where they come from and which key hashed them; the bytes of a
message as received are kept when a rewrite changed them (`guard policy replay`).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        # lists imported before this revision: their source and key are unknown; a file
        # list the policy names is synced again at the next start (the key differs)
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False,
                                   server_default="file"))
        batch.add_column(sa.Column("key_fingerprint", sa.String(16), nullable=False,
                                   server_default=""))
        batch.add_column(sa.Column("digest_scheme", sa.Integer, nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("contents") as batch:
        batch.add_column(sa.Column("original", sa.LargeBinary, nullable=True))
    op.create_table(
        "store_meta",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    with op.batch_alter_table("contents") as batch:
        batch.drop_column("original")
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("digest_scheme")
        batch.drop_column("key_fingerprint")
        batch.drop_column("kind")
