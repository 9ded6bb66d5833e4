"""The REST API and webhooks: personal API tokens and their use log, registered webhooks and their deliveries. A
store made at 0006 gets the tables; a new one has them already (0001 creates today's tables).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlmodel import SQLModel

import labeler.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("apitoken", "apitokenuse", "webhook", "webhookdelivery")  # in creation order (foreign keys)


def upgrade() -> None:
    bind = op.get_bind()
    for name in TABLES:
        if not sa.inspect(bind).has_table(name):
            SQLModel.metadata.tables[name].create(bind)


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
