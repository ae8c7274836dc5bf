"""Incidents (guard/store/incidents.py): a misdelivery a sender reported, or a severe
event an officer put on record, with the officer's free-text findings.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(32), nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("opened_by", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("wrong_recipients", sa.Text, nullable=False),
        sa.Column("reporter_note", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cause", sa.Text, nullable=False),
        sa.Column("harm", sa.Text, nullable=False),
        sa.Column("measures", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_incidents_message", "incidents", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_message", "incidents")
    op.drop_table("incidents")
