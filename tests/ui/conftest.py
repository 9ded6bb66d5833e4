"""A running rankloop app on a free port: real SQLite file, tiny model, labeler and admin accounts."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session

from labeler.api.app import rest_app
from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.users import add_user
from labeler.ui.app import build_ui, launch
from labeler.ui.deps import UIDeps
from models.policy import PolicyPool
from models.tiny import tiny_model_and_tokenizer
from tests.labeler.helpers import make_sets

PASSWORDS = {"admin": "admin-password", "alice": "alice-password", "bob": "bob-password"}


@dataclass
class RunningApp:
    url: str
    engine: object
    home: Path
    clock: TestClock


class TestClock:
    """The app's clock in tests: real monotonic time plus whatever the test skips ahead (`advance`), so a test
    outlives the app's one-second caches without sleeping through them."""

    __test__ = False  # not a test class

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seeded_engine(home: Path, sets: int = 6):
    engine = make_engine(f"sqlite:///{home / 'rankloop.db'}")
    with Session(engine) as session:
        add_user(session=session, name="admin", password=PASSWORDS["admin"], role="admin")
        add_user(session=session, name="alice", password=PASSWORDS["alice"])
        add_user(session=session, name="bob", password=PASSWORDS["bob"])
        pv = ensure_initial_policy(session=session, base_model="tiny")
        make_sets(session, sets, n=4, version_id=pv.id)
    return engine


@pytest.fixture
def running_app(tmp_path):
    engine = seeded_engine(tmp_path)
    clock = TestClock()
    deps = UIDeps(engine=engine, home=tmp_path, pool=PolicyPool(*tiny_model_and_tokenizer()), clock=clock)
    port = free_port()
    demo = launch(build_ui(deps), deps, port=port, block=False, api=rest_app(engine))
    yield RunningApp(url=f"http://127.0.0.1:{port}/", engine=engine, home=tmp_path, clock=clock)
    demo.close()
