"""Labelers' edits and the model's revisions as completions: each completion says who wrote it (`origin`:
generated | edit | revision), an edit its author, the answer it rewrote and the seconds it took, a revision its
principle and critique (`detail`); and the constitution table the revisions follow. Existing completions are
`generated`. A store made at 0002 gets the columns and the table; a new one has them already (0001 creates today's
tables), so each is added only where missing.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel import SQLModel

import labeler.store.tables  # noqa: F401  (registers the constitution table on SQLModel.metadata)

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS: list[sa.Column] = [
    sa.Column("origin", sa.String(length=16), nullable=False, server_default="generated"),
    sa.Column("author_id", sa.Integer(), nullable=True),
    sa.Column("source_id", sa.Integer(), nullable=True),
    sa.Column("edit_seconds", sa.Float(), nullable=True),
    sa.Column("detail", sa.JSON(), nullable=True),
]


def upgrade() -> None:
    bind = op.get_bind()
    if not sa.inspect(bind).has_table("constitution"):
        SQLModel.metadata.tables["constitution"].create(bind)
    have = {c["name"] for c in sa.inspect(bind).get_columns("completion")}
    missing = [column for column in COLUMNS if column.name not in have]
    if not missing:
        return
    # batch mode: SQLite cannot add a foreign key to an existing table, so Alembic copies it
    with op.batch_alter_table("completion") as batch:
        for column in missing:
            batch.add_column(column)
        if "author_id" not in have:
            batch.create_foreign_key("fk_completion_author", "user", ["author_id"], ["id"])
        if "source_id" not in have:
            batch.create_foreign_key("fk_completion_source", "completion", ["source_id"], ["id"])


def downgrade() -> None:
    op.drop_table("constitution")
    with op.batch_alter_table("completion") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
