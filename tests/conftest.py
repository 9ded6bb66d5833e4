"""Shared fixtures: tiny models (no download), a fresh in-memory store per test, the shared data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from models.tiny import tiny_model_and_tokenizer

REPO = Path(__file__).resolve().parents[1]
# the simulated labelers and the load client live with the benchmarks (bench/), out of the product; the tests
# import them as the benchmarks do
sys.path.insert(0, str(REPO / "bench"))
SHARED_DATA = REPO.parent / "shared" / "data"
HH_FILE = SHARED_DATA / "hh-rlhf-harmless-test-part-a.jsonl.gz"


def pytest_configure(config: pytest.Config) -> None:
    """Under `make test`'s workers (pytest-xdist), each worker's torch gets its share of the cores, so two workers
    on two cores do not each run two threads (nor the servers and jobs a test starts)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    """A fresh tiny causal LM and tokenizer (seed 0)."""
    return tiny_model_and_tokenizer(seed=0)


@pytest.fixture
def home() -> Path:
    """The rankloop home used by `make test` (holds the embedded model cache)."""
    return Path(os.environ.get("RANKLOOP_HOME", REPO / "runs"))


@pytest.fixture
def hh_file() -> Path:
    if not HH_FILE.exists():
        pytest.skip(f"shared data not found at {HH_FILE} (CI always has it)")
    return HH_FILE


@pytest.fixture
def engine():
    """A fresh in-memory store per test."""
    from labeler.store.db import make_engine

    return make_engine("sqlite://")


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the test session: `$RANKLOOP_TEST_PG_URL`, else a throw-away local cluster;
    tests that need it are skipped, with the reason, where neither exists."""
    from tests.pgserver import PostgresUnavailable, throwaway_postgres

    if os.environ.get("RANKLOOP_TEST_PG_URL"):
        yield os.environ["RANKLOOP_TEST_PG_URL"]
        return
    try:
        with throwaway_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty PostgreSQL database per test."""
    import uuid

    from tests.pgserver import create_database, drop_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield create_database(pg_server, name)
    drop_database(pg_server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The same test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def session(engine):
    from sqlmodel import Session

    with Session(engine) as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state (e.g. bf16 autocast chosen by a trl trainer); in production every
    stage is its own process, so each test starts from a fresh state too."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
