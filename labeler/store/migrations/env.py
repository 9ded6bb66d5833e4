"""Alembic's environment: migrations run on the connection `labeler.store.db.migrate` passes in (or, from a shell, on
`sqlalchemy.url` of alembic.ini), against the tables of labeler/store/tables.py."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import labeler.store.tables  # noqa: F401  (registers every table on SQLModel.metadata)

config = context.config


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as shell_connection:
        run(shell_connection)
