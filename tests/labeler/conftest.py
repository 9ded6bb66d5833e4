"""Store tests run on both databases: an in-memory SQLite store and a fresh PostgreSQL database."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    from labeler.db import make_engine

    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()
