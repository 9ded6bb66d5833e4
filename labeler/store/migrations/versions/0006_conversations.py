"""Conversations: a prompt knows the set and answer it continues, its conversation and turn, its imported
follow-ups and whether an admin stopped its branch; a ranking keeps the next user message its labeler wrote. A
store made at 0005 gets the columns; a new one has them already (0001 creates today's tables).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PROMPT_COLUMNS: list[tuple[str, Callable[[], sa.Column]]] = [
    ("parent_set_id", lambda: sa.Column("parent_set_id", sa.Integer(), nullable=True)),
    ("parent_completion_id", lambda: sa.Column("parent_completion_id", sa.Integer(), nullable=True)),
    ("conversation_id", lambda: sa.Column("conversation_id", sa.Integer(), nullable=True)),
    ("turn", lambda: sa.Column("turn", sa.Integer(), nullable=False, server_default="1")),
    ("follow_ups", lambda: sa.Column("follow_ups", sa.JSON(), nullable=True)),
    ("stopped", lambda: sa.Column("stopped", sa.Boolean(), nullable=False, server_default="0")),
]


def _have(table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    have = _have("prompt")
    for name, column in PROMPT_COLUMNS:
        if name not in have:
            op.add_column("prompt", column())
    if "ix_prompt_parent_set_id" not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("prompt")}:
        op.create_index("ix_prompt_parent_set_id", "prompt", ["parent_set_id"])
        op.create_index("ix_prompt_conversation_id", "prompt", ["conversation_id"])
    for table in ("ranking", "supersededranking"):
        if "follow_up" not in _have(table):
            op.add_column(table, sa.Column("follow_up", sa.String(), nullable=True))


def _drop(table: str, name: str) -> None:
    """ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too): a batch copy of `prompt` would drop the table that sets
    point to, which SQLite's foreign keys refuse."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f'ALTER TABLE "{table}" DROP COLUMN "{name}"')
    else:
        op.drop_column(table, name)


def downgrade() -> None:
    for table in ("ranking", "supersededranking"):
        _drop(table, "follow_up")
    op.drop_index("ix_prompt_conversation_id", "prompt")
    op.drop_index("ix_prompt_parent_set_id", "prompt")
    for name, _ in reversed(PROMPT_COLUMNS):
        _drop("prompt", name)
