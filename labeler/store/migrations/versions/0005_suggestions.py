"""Suggestions: a lease records the judge's ranking it offered (or held back) as a suggestion. A store made at 0004
gets the column; a new one has it already (0001 creates today's tables).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("assignment")}
    if "suggestion" not in have:
        with op.batch_alter_table("assignment") as batch:
            batch.add_column(sa.Column("suggestion", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("assignment") as batch:
        batch.drop_column("suggestion")
