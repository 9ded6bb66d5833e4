"""Engine and sessions. SQLite by default (WAL, `synchronous=FULL`, foreign keys, busy timeout); PostgreSQL when
the URL says so. The engine is made by a function, never at import time.

    engine = make_engine("sqlite:///runs/rankloop.db")   # migrates the store to the newest schema (Alembic)
    with Session(engine) as session: ...                 # a unit of work that writes
    with read_session(engine) as session: ...            # reads only: never takes SQLite's write lock

On SQLite a write session starts with `BEGIN IMMEDIATE`, so a read-then-write (a lease) cannot interleave with
another writer, while a read session starts a deferred transaction: in WAL mode readers and the one writer never
wait for each other. Keep every transaction short: read, close, do the slow work (a model call, a file), then
write in a new session.

Durability: `synchronous=FULL` syncs the WAL at every commit, so an acknowledged ranking survives a power cut,
not only a crash of the process (NORMAL would keep it across a process crash but may lose the last commits on
power loss). Labels cost human time; a sync per commit is cheap next to that (see `bench/store.py`).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, event, inspect, text
from sqlalchemy.engine import Connection, Engine, Inspector
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from labeler.store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

logger = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 30_000
_READ_OPTION = "rankloop_read_only"


def default_url(home: Path) -> str:
    """The embedded database inside the home folder."""
    return f"sqlite:///{Path(home) / 'rankloop.db'}"


def read_session(engine: Engine) -> Session:
    """A session for reads. On SQLite its transaction is deferred and takes no write lock; do not write in it."""
    return Session(engine.execution_options(**{_READ_OPTION: True}))


class TurnTakingConnection(sqlite3.Connection):
    """A SQLite connection whose write transactions take turns on a lock shared by the engine's connections.

    Writers in one process then wait for each other on that lock (about first come, first served) rather than
    in SQLite's busy handler, which polls in growing sleeps of up to 100 ms and so added tens of milliseconds
    to a submit under load. A turn ends once COMMIT or ROLLBACK has returned. Other processes on the same file
    still meet at SQLite's own lock."""

    turn: threading.Lock | None = None
    holds_turn = False

    def take_turn(self) -> None:
        if self.turn is not None and not self.holds_turn:
            # after the timeout, go on without a turn: SQLite's busy handler decides, as without the lock
            self.holds_turn = self.turn.acquire(timeout=BUSY_TIMEOUT_MS / 1000)

    def end_turn(self) -> None:
        if self.holds_turn and self.turn is not None:
            self.holds_turn = False
            self.turn.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()


def _sqlite_setup(engine: Engine) -> None:
    # No turns for an in-memory store: its sessions share one connection, so a second session in the same
    # thread would wait for its own turn.
    turn = threading.Lock() if engine.url.database not in (None, "", ":memory:") else None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        if isinstance(dbapi_conn, TurnTakingConnection):
            dbapi_conn.turn = turn
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own handling defers it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # IMMEDIATE takes the write lock up front, so a lease's read-then-insert cannot interleave with another
        # writer; read sessions start deferred and never hold it.
        if conn.get_execution_options().get(_READ_OPTION, False):
            conn.exec_driver_sql("BEGIN")
            return
        dbapi_conn = conn.connection.dbapi_connection
        takes_turns = isinstance(dbapi_conn, TurnTakingConnection)
        if takes_turns:
            dbapi_conn.take_turn()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            if takes_turns:
                dbapi_conn.end_turn()
            raise


# Columns added after stores existed whose values follow from other rows: filled once, as the column is added.
_BACKFILLS = {
    ("completionset", "labels_done"): (
        "UPDATE completionset SET labels_done = (SELECT count(*) FROM ranking"
        " WHERE ranking.set_id = completionset.id AND NOT ranking.skipped)"
    ),
}


# Indexes older stores have and the current tables do not: dropped on start (a planner could still pick them).
_RETIRED_INDEXES = {"completionset": ["ix_set_open"]}


def _drop_retired_indexes(conn: Connection, existing: Inspector) -> None:
    retired = [
        (table, name)
        for table, names in _RETIRED_INDEXES.items()
        if existing.has_table(table)
        for name in names
        if name in {ix["name"] for ix in existing.get_indexes(table)}
    ]
    for table, name in retired:
        conn.execute(text(f'DROP INDEX "{name}"'))
        logger.info("store: dropped index %s on %s", name, table)


def _addable(column: Column) -> bool:
    return column.nullable or column.server_default is not None


def _add_missing_columns(conn: Connection, existing: Inspector) -> None:
    """Columns added to a table after a store was created (nullable ones, or with a default, filled from the
    other rows where `_BACKFILLS` says how): ALTER TABLE ... ADD COLUMN."""
    missing = [
        (table.name, column)
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if _addable(column) and column.name not in {c["name"] for c in existing.get_columns(table.name)}
    ]
    if not missing:
        return
    for table_name, column in missing:
        kind = column.type.compile(dialect=conn.dialect)
        if column.server_default is not None:
            default = column.server_default.arg  # type: ignore[attr-defined]
            kind += f" DEFAULT {default}" + ("" if column.nullable else " NOT NULL")
        conn.execute(text(f'ALTER TABLE "{table_name}" ADD COLUMN "{column.name}" {kind}'))
        if (table_name, column.name) in _BACKFILLS:
            conn.execute(text(_BACKFILLS[(table_name, column.name)]))
        logger.info("store: added column %s.%s", table_name, column.name)
    for table in SQLModel.metadata.sorted_tables:  # and the indexes on them (unique ones included)
        for index in table.indexes:
            index.create(conn, checkfirst=True)


def catch_up(conn: Connection) -> None:
    """A store made before migrations brought to the schema of revision 0001 (its tables created first):
    missing columns added and filled, retired indexes dropped. Run by that revision, in its transaction."""
    existing = inspect(conn)
    _add_missing_columns(conn, existing)
    _drop_retired_indexes(conn, inspect(conn))


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


@functools.cache
def _migrations() -> tuple[AlembicConfig, ScriptDirectory, str | None]:
    """Alembic's config, its revisions (read from disk once per process, outside any transaction) and the
    newest revision."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    return config, script, script.get_current_head()


def migrate(engine: Engine) -> None:
    """Bring the store to the newest schema with Alembic's revisions (labeler/store/migrations), in one transaction;
    a store already there costs one read of its `alembic_version`. The revisions are run from memory (what
    `alembic upgrade head` does, without reading env.py inside the transaction)."""
    config, script, head = _migrations()
    with engine.begin() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        with EnvironmentContext(
            config, script, fn=lambda rev, _: script._upgrade_revs("head", rev), destination_rev="head"
        ) as env:
            env.configure(connection=conn, target_metadata=SQLModel.metadata, render_as_batch=True)
            with env.begin_transaction():
                env.run_migrations()


def make_engine(url: str, *, create: bool = True, echo: bool = False) -> Engine:
    """An engine for `url` (`sqlite:///path`, `sqlite://` in memory, `postgresql+psycopg://...`)."""
    if url.startswith("sqlite"):
        connect_args = {
            "check_same_thread": False,
            "timeout": BUSY_TIMEOUT_MS / 1000,
            "factory": TurnTakingConnection,
        }
        kwargs: dict = {"connect_args": connect_args}
        database = url.split("///", 1)[1] if "///" in url else ""
        if database in ("", ":memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, **kwargs)
        _sqlite_setup(engine)
    else:
        # Every timestamp is UTC; the pool covers the web server's worker threads plus the background ones.
        engine = create_engine(
            url,
            echo=echo,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=30,
            connect_args={"options": "-c timezone=UTC"},
        )
    if create:
        migrate(engine)
    return engine
