"""The log-in check runs on its own low-priority threads, one per core, and answers like the users table."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import pytest
from sqlmodel import Session

from labeler.store.login import LoginThrottle
from labeler.store.users import add_user
from labeler.ui.auth import HASHING_NICENESS, hashing_pool, make_auth


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


def test_a_concurrent_burst_checks_only_the_free_guesses_and_leaves_the_user_a_way_in(tmp_path):
    """40 wrong passwords sent at once against one account: each is reserved before any hash runs, so only the
    throttle's free failures are checked and the rest are refused with 429; the real user, from another address,
    waits at most the account's delay (not the lock) and gets in."""
    from fastapi import HTTPException

    from labeler.store.db import make_engine
    from labeler.ui.auth import CLIENT_ADDRESS

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")  # a file: the hashing threads read it at once
    with Session(engine) as session:
        add_user(session=session, name="carol", password="carol-password")
    throttle = LoginThrottle()
    checked: list[str] = []
    pool = hashing_pool()
    check = make_auth(engine, throttle, pool)

    async def guess(password: str, address: str) -> bool | int:
        CLIENT_ADDRESS.set(address)
        try:
            ok = await check("carol", password)
        except HTTPException as exc:
            return exc.status_code
        checked.append(password)
        return ok

    async def burst() -> list[bool | int]:
        return await asyncio.gather(*(guess(f"guess-{i}", "203.0.113.9") for i in range(40)))

    try:
        answers = asyncio.run(burst())
        assert answers.count(False) == len(checked) == throttle.free_failures
        assert answers.count(429) == 40 - throttle.free_failures
        assert throttle.wait_seconds("carol", "203.0.113.9") > 0
        assert throttle.wait_seconds("carol", "198.51.100.7") <= throttle.account_max_delay
        throttle.clock = lambda: time.monotonic() + throttle.account_max_delay  # the account's delay later
        assert asyncio.run(guess("carol-password", "198.51.100.7")) is True
    finally:
        pool.shutdown()


def test_a_burst_over_many_accounts_from_one_address_is_bounded_and_a_team_behind_one_address_gets_in(
    tmp_path,
):
    """40 wrong passwords for 40 accounts from one address: at most MAX_CHECKS_PER_ADDRESS are checked at once,
    and once the address's free failures are spent the rest are delayed (429). 12 labelers with their right passwords, from another single
    address at once, all get in: they take turns, none is refused."""
    from fastapi import HTTPException

    from labeler.store.db import make_engine
    from labeler.ui.auth import CLIENT_ADDRESS, MAX_CHECKS_PER_ADDRESS

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with Session(engine) as session:
        for i in range(12):
            add_user(session=session, name=f"l{i}", password=f"password-{i}")
    checked: list[str] = []
    pool = hashing_pool()
    throttle = LoginThrottle()
    check = make_auth(engine, throttle, pool)

    async def attempt(name: str, password: str, address: str) -> bool | int:
        CLIENT_ADDRESS.set(address)
        try:
            ok = await check(name, password)
        except HTTPException as exc:
            return exc.status_code
        checked.append(name)
        return ok

    async def both() -> tuple[list, list]:
        spray = asyncio.gather(*(attempt(f"victim{i}", "guess", "203.0.113.9") for i in range(40)))
        team = asyncio.gather(*(attempt(f"l{i}", f"password-{i}", "198.51.100.7") for i in range(12)))
        return await spray, await team

    try:
        spray, team = asyncio.run(both())
    finally:
        pool.shutdown()
    bound = MAX_CHECKS_PER_ADDRESS + throttle.free_failures  # those in flight, then the free failures' turns
    assert spray.count(False) <= bound and spray.count(429) == 40 - spray.count(False)
    assert team == [True] * 12
