"""Worker leases: one holder at a time, renewal, takeover after expiry or release (both databases)."""

import time

from sqlmodel import Session

from labeler.records.workers import hold_worker_lease, lease_holder, release_worker_lease


def test_one_holder_renews_another_takes_over_after_expiry_or_release(engine):
    def hold(holder: str, seconds: float = 30) -> bool:
        with Session(engine) as s:
            return hold_worker_lease(session=s, name="pregen", holder=holder, seconds=seconds)

    assert hold("a") and not hold("b")
    assert hold("a")  # renewing keeps it
    with Session(engine) as s:
        assert lease_holder(session=s, name="pregen") == "a"
    assert hold("a", seconds=0.2)
    time.sleep(0.3)  # a dies: its lease runs out
    assert hold("b") and not hold("a")
    with Session(engine) as s:
        release_worker_lease(session=s, name="pregen", holder="a")  # not a's to release: no effect
        assert lease_holder(session=s, name="pregen") == "b"
        release_worker_lease(session=s, name="pregen", holder="b")
        assert lease_holder(session=s, name="pregen") is None
    assert hold("a")  # taken over at once after a release
