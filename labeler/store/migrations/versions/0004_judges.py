"""Judges: labeler accounts that are programs (role `judge`), each with its kind and configuration. A store made
at 0003 gets the table; a new one has it already (0001 creates today's tables).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel import SQLModel

import labeler.store.tables  # noqa: F401  (registers the judge table on SQLModel.metadata)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("judge"):
        SQLModel.metadata.tables["judge"].create(bind)


def downgrade() -> None:
    op.drop_table("judge")
