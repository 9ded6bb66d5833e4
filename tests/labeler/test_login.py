"""The log-in throttle (a fake clock) and constant-cost authentication."""

import time

from sqlmodel import Session

from labeler.store.login import LoginThrottle
from labeler.store.users import add_user, authenticate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_growing_delay_then_lock_per_pair_and_address_and_only_a_delay_per_account():
    clock = Clock()
    throttle = LoginThrottle(
        clock=clock, free_failures=3, base_delay=1, lock_after=6, lock_seconds=600, account_max_delay=30
    )
    waits = []

    def wrong(name: str, address: str) -> float:
        wait = throttle.reserve(name, address)
        if wait == 0:
            throttle.settle(name, address, ok=False)
        return wait

    for _ in range(5):
        assert wrong("alice", "10.0.0.1") == 0
        waits.append(throttle.wait_seconds("alice", "10.0.0.1"))
        clock.now += waits[-1]
    assert waits == [0, 0, 1, 2, 4]  # typos are free, then the wait doubles
    assert wrong("alice", "10.0.0.1") == 0
    assert throttle.wait_seconds("alice", "10.0.0.1") == 600  # the pair is locked
    assert throttle.reserve("alice", "10.0.0.1") == 600  # refused, and not counted
    assert throttle.wait_seconds("bob", "10.0.0.1") == 600  # the address, for any account
    assert throttle.wait_seconds("alice", "10.9.9.9") == 8  # the account from elsewhere: delayed, not locked
    clock.now += 30
    assert throttle.reserve("alice", "10.9.9.9") == 0  # the real alice, within the account's longest delay
    throttle.settle("alice", "10.9.9.9", ok=True)
    assert throttle.wait_seconds("alice", "10.9.9.9") == 0  # success clears the account ...
    assert throttle.wait_seconds("carol", "10.0.0.1") > 500  # ... but not the attacker's address


def test_a_burst_of_concurrent_guesses_is_counted_before_any_is_checked():
    """40 guesses at one account at once: each reservation sees the ones before it, so only the free ones are
    checked (the address's own count grows once they are)."""
    import threading

    throttle = LoginThrottle(free_failures=3, lock_after=10)
    results: list[float] = []
    start = threading.Barrier(40)

    def guess() -> None:
        start.wait()
        results.append(throttle.reserve("alice", "10.0.0.1"))

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count(0.0) == 3 and all(w > 0 for w in results if w)
    assert throttle.wait_seconds("alice", "10.9.9.9") <= throttle.account_max_delay


def test_failures_are_forgotten_after_a_quiet_period():
    clock = Clock()
    throttle = LoginThrottle(clock=clock, free_failures=1, forget_after=60)
    throttle.reserve("a", "x")
    clock.now += throttle.wait_seconds("a", "x")  # 1 s
    throttle.reserve("a", "x")
    assert throttle.wait_seconds("a", "x") == 2
    clock.now += 120
    throttle.reserve("a", "x")  # counted from one again
    assert throttle.wait_seconds("a", "x") == 1


def test_unknown_and_disabled_names_cost_as_much_as_a_wrong_password(engine):
    with Session(engine) as s:
        add_user(session=s, name="alice", password="alice-password")
        add_user(session=s, name="dora", password="dora-password")
        from labeler.store.users import set_disabled

        set_disabled(session=s, name="dora", disabled=True)

    def seconds(name: str, password: str) -> float:
        best = float("inf")
        for _ in range(5):  # the fastest of 5: other work on the machine only ever adds time
            start = time.perf_counter()
            with Session(engine) as s:
                result = authenticate(session=s, name=name, password=password)
            best = min(best, time.perf_counter() - start)
        assert result is None or name == "alice"
        return best

    wrong, unknown, disabled = (
        seconds("alice", "nope-nope"),
        seconds("nobody", "nope"),
        seconds("dora", "dora-password"),
    )
    assert wrong > 0.01  # one scrypt
    assert 0.5 < unknown / wrong < 2 and 0.5 < disabled / wrong < 2
    with Session(engine) as s:
        assert authenticate(session=s, name="alice", password="alice-password") is not None
        assert authenticate(session=s, name="dora", password="dora-password") is None
