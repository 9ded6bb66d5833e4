"""What the UI needs, passed in (never read from module globals), and the server-side role checks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import gradio as gr
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.store.db import read_session
from labeler.store.tables import User, id_of, utcnow
from labeler.store.users import get_user

if TYPE_CHECKING:  # types only: the UI does not import torch to start
    from models.generation import PolicyBackend
    from rlhf.serve.jobs import JobRunner
    from rlhf.serve.monitor import BackgroundMonitor

logger = logging.getLogger(__name__)


@dataclass
class UIDeps:
    engine: Engine
    home: Path
    pool: PolicyBackend | None = None  # generation for the policies tab (side by side)
    runner: JobRunner | None = None  # training jobs as separate processes
    monitor: BackgroundMonitor | None = None  # the generator's and jobs' CPU share and rate
    completions_per_set: int = 4  # how many answers the labeling page is laid out for before any set arrives
    clock: Callable[[], float] = time.monotonic  # what the page's short caches and the session guard read
    figures_at_start: bool = False  # start the dashboard's figures as the UI is built (rankloop serve)


def current_user(engine: Engine, request: gr.Request | None) -> User:
    """The logged-in, enabled user of this request, or a gr.Error."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("Not logged in.")
    with read_session(engine) as session:
        user = get_user(session=session, name=name)
        if user is None or user.disabled:
            raise gr.Error("This account does not exist or is disabled.")
        session.expunge(user)
        return user


class RecentUsers:
    """`current_user` for the labeling hot path: an account read at most once per `ttl` seconds per name, as
    the session guard rereads it (labeler/ui/guard.py), so disabling a user takes effect within that second
    here too. Saves a read transaction per submit (three round trips on PostgreSQL). Admin actions do not use
    it: `require_admin` always reads the role fresh."""

    def __init__(self, engine: Engine, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.engine, self.ttl, self.clock = engine, ttl, clock
        self._seen: dict[str, tuple[float, User]] = {}
        self._lock = threading.Lock()

    def get(self, request: gr.Request | None) -> User:
        name = getattr(request, "username", None)
        now = self.clock()
        with self._lock:
            seen = self._seen.get(name) if name else None
        if seen is not None and now - seen[0] < self.ttl:
            return seen[1]
        user = current_user(self.engine, request)
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[user.name] = (now, user)
        return user

    def user_id(self, request: gr.Request | None) -> int:
        """The id of `get`'s user."""
        return id_of(self.get(request))


def require_admin(engine: Engine, request: gr.Request | None) -> User:
    """Every admin handler starts here: the role is checked on the server, whatever the page showed."""
    user = current_user(engine, request)
    if user.role != "admin":
        raise gr.Error("Admins only.")
    return user


@dataclass(frozen=True)
class TabLoad:
    """What every tab builder returns: what the tab fills when the page opens. `load(request)` gives one value
    per output (a tuple, or the value itself for one output) or a dict of component -> update."""

    load: Callable[[gr.Request], Any]
    outputs: list[Any]

    def updates(self, request: gr.Request) -> dict:
        values = self.load(request)
        if isinstance(values, dict):
            return values
        values = values if isinstance(values, tuple) else (values,)
        return dict(zip(self.outputs, values, strict=True))


NOTHING_ON_LOAD = TabLoad(lambda request: {}, [])  # a tab that fills nothing when the page opens


T = TypeVar("T")


class Recent(Generic[T]):
    """A value read from the store by `read` at most once per `ttl` seconds, shared by every session: what every
    lease needs (the guidelines' version, the conversation settings: a read transaction per submit otherwise).
    The caller whose turn it is reads it and waits: for quick reads (`BackgroundValue` for slow ones). `made_at`:
    when the value shown was read; `get(fresh=True)` reads it again now."""

    def __init__(
        self,
        engine: Engine,
        read: Callable[[Session], T],
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.engine, self.read, self.ttl, self.clock = engine, read, ttl, clock
        self._seen: tuple[float, T] | None = None
        self.made_at: datetime | None = None
        self._lock = (
            threading.Lock()
        )  # one reader at a time: others wait for its value instead of reading too

    def get(self, fresh: bool = False) -> T:
        with self._lock:
            now, seen = self.clock(), self._seen
            if seen is not None and not fresh and now - seen[0] < self.ttl:
                return seen[1]
            with read_session(self.engine) as session:
                value = self.read(session)
            self._seen, self.made_at = (now, value), utcnow()
            return value


@dataclass(frozen=True)
class Snapshot(Generic[T]):
    """What a `BackgroundValue` holds now: the latest value (None before the first is ready), when it was read,
    how long that took, whether a newer one is being computed, and the last computation's error."""

    value: T | None
    made_at: datetime | None
    seconds: float
    refreshing: bool
    error: str = ""


class BackgroundValue(Generic[T]):
    """A value read from the store by `read` in a thread of its own, so no page waits for it: the admin
    dashboard's store-wide figures (a pass over every ranking and two model fits: tens of seconds at 100,000
    rankings). `get` returns the latest value at once, waiting at most `wait` seconds for one being read when the
    last read took less than that (a small store's figures arrive in time; a large one's later, on the next
    refresh, and the page does not wait for them), and starts a new read when the value
    is older than `ttl` seconds or than ten times what the last read took, so a slow read takes at most a tenth of
    a core; `get(fresh=True)` starts one now. One read at a time, shared by every session."""

    def __init__(
        self,
        engine: Engine,
        read: Callable[[Session], T],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        wait: float = 2.0,
    ):
        self.engine, self.read, self.ttl, self.clock, self.wait = engine, read, ttl, clock, wait
        self._value: T | None = None
        self._read_at: float | None = None  # clock time the current value's read started
        self._made_at: datetime | None = None
        self._seconds = 0.0
        self._error = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start a read now unless one is under way (`rankloop serve` at start: the first page finds the value)."""
        with self._lock:
            self._start_read()

    def get(self, fresh: bool = False) -> Snapshot[T]:
        with self._lock:
            due = (
                fresh
                or self._read_at is None
                or self.clock() - self._read_at >= max(self.ttl, 10 * self._seconds)
            )
            if due:
                self._start_read()
            # wait only for a computation that can end in time: the first, or one like the last, if that was quick
            thread = self._thread if self._seconds <= self.wait else None
        if thread is not None:
            thread.join(self.wait)
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            return Snapshot(self._value, self._made_at, self._seconds, running, self._error)

    def _start_read(self) -> None:
        """With the lock held: a read in a thread of its own, unless one is running."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._refresh, name="figures", daemon=True)
            self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for a computation in progress to end (tests, shutdown)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _refresh(self) -> None:
        started = self.clock()
        try:
            with read_session(self.engine) as session:
                value = self.read(session)
        except Exception as exc:  # shown on the page; the next read is tried after `ttl`
            logger.exception("reading the figures failed")
            with self._lock:
                self._read_at, self._error = started, f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._value, self._read_at, self._error = value, started, ""
            self._made_at, self._seconds = utcnow(), self.clock() - started
