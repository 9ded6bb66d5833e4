"""Engine and sessions. SQLite by default (WAL, `synchronous=FULL`, foreign keys, busy timeout); PostgreSQL when
the URL says so. The engine is made by a function, never at import time.

    engine = make_engine("sqlite:///runs/rankloop.db")   # creates missing tables and columns on first start
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

import logging
from pathlib import Path

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

from labeler import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

logger = logging.getLogger(__name__)
BUSY_TIMEOUT_MS = 30_000
_READ_OPTION = "rankloop_read_only"


def default_url(home: Path) -> str:
    """The embedded database inside the home folder."""
    return f"sqlite:///{Path(home) / 'rankloop.db'}"


def read_session(engine: Engine) -> Session:
    """A session for reads. On SQLite its transaction is deferred and takes no write lock; do not write in it."""
    return Session(engine.execution_options(**{_READ_OPTION: True}))


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
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
        read_only = conn.get_execution_options().get(_READ_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _add_missing_columns(engine: Engine) -> None:
    """Columns added to a table after a store was created (nullable ones only): ALTER TABLE ... ADD COLUMN."""
    existing = inspect(engine)
    missing = [
        (table.name, column)
        for table in SQLModel.metadata.sorted_tables
        for column in table.columns
        if column.nullable and column.name not in {c["name"] for c in existing.get_columns(table.name)}
    ]
    if not missing:
        return
    with engine.begin() as conn:
        for table_name, column in missing:
            kind = column.type.compile(dialect=engine.dialect)
            conn.execute(text(f'ALTER TABLE "{table_name}" ADD COLUMN "{column.name}" {kind}'))
            logger.info("store: added column %s.%s", table_name, column.name)


def make_engine(url: str, *, create: bool = True, echo: bool = False) -> Engine:
    """An engine for `url` (`sqlite:///path`, `sqlite://` in memory, `postgresql+psycopg://...`)."""
    if url.startswith("sqlite"):
        kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000}}
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
        SQLModel.metadata.create_all(engine)
        _add_missing_columns(engine)
    return engine
