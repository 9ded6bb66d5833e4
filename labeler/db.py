"""Engine and sessions. SQLite by default (WAL, foreign keys, busy timeout, write-locking transactions);
PostgreSQL when the URL says so. The engine is made by a function, never at import time.

    engine = make_engine("sqlite:///runs/rankloop.db")   # creates the tables on first start
    with Session(engine) as session: ...
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, create_engine

from labeler import tables  # noqa: F401  (registers the tables on SQLModel.metadata)

BUSY_TIMEOUT_MS = 30_000


def default_url(home: Path) -> str:
    """The embedded database inside the home folder."""
    return f"sqlite:///{Path(home) / 'rankloop.db'}"


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
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # IMMEDIATE takes the write lock up front: a lease's read-then-insert cannot interleave with another.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


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
        engine = create_engine(url, echo=echo, pool_pre_ping=True)
    if create:
        SQLModel.metadata.create_all(engine)
    return engine
