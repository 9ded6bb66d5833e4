"""The log-in check runs on its own low-priority threads, one per core, and answers like the users table."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import pytest
from sqlmodel import Session

from labeler.login import LoginThrottle
from labeler.ui.auth import HASHING_NICENESS, hashing_pool, make_auth
from labeler.users import add_user


def own_niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_hashing_threads_run_below_the_server_and_leave_it_as_it_was():
    before = own_niceness()
    pool = hashing_pool()
    try:
        seen = {pool.submit(own_niceness).result() for _ in range(8)}
    finally:
        pool.shutdown()
    assert seen == {HASHING_NICENESS}
    assert pool._max_workers == (os.cpu_count() or 2)
    assert own_niceness() == before


def test_check_answers_from_the_pool(engine):
    with Session(engine) as session:
        add_user(session=session, name="carol", password="carol-password")
    pool = hashing_pool()
    check = make_auth(engine, LoginThrottle(), pool)

    async def attempts() -> list[bool]:
        return [
            await check("carol", "carol-password"),
            await check("carol", "wrong-password"),
            await check("nobody", "carol-password"),
        ]

    try:
        assert asyncio.run(attempts()) == [True, False, False]
    finally:
        pool.shutdown()
