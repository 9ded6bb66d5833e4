"""The schema of 2026-12-06, for a new store and for every store made before migrations: the tables that do not
exist yet are created; columns added since a store was made are added (filled from the other rows where
labeler/store/db.py's `_BACKFILLS` says how); indexes the tables no longer have are dropped.

Revision ID: 0001
Revises:
"""

from alembic import op
from sqlmodel import SQLModel

from labeler.store.db import catch_up

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    SQLModel.metadata.create_all(bind)
    catch_up(bind)


def downgrade() -> None:
    raise NotImplementedError("the first revision has nothing to go back to")
