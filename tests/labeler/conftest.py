"""Store tests run on both databases: an in-memory SQLite store and a fresh PostgreSQL database."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    from labeler.store.db import make_engine

    url = "sqlite://" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    yield engine
    engine.dispose()


# The bulk import/export round trips on PostgreSQL take 25-40 s each and test the same code as on SQLite (the
# store's PostgreSQL paths are covered by the leasing, submit and replica tests): they run in `make test-slow`.
SLOW_ON_POSTGRES = ("test_export_then_import_round_trips", "test_hh_import_gives_1500_pairs")


def pytest_collection_modifyitems(items):
    for item in items:
        if "postgresql" in item.name and item.name.startswith(SLOW_ON_POSTGRES):
            item.add_marker(pytest.mark.slow)
