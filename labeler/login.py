"""Log-in throttling: failed attempts slow down the next one, per account name and per client address.

    throttle = LoginThrottle()
    if (wait := throttle.wait_seconds(name, address)) > 0: refuse, "try again in {wait} s"
    ok = authenticate(...)                  # the same cost for unknown names as for wrong passwords
    throttle.succeeded(name, address) if ok else throttle.failed(name, address)

The first `free_failures` mistakes cost nothing (typos); from then on each failure doubles the wait before the
next attempt (1 s, 2 s, 4 s, ... up to `max_delay`), and `lock_after` failures lock the key for `lock_seconds`.
Unknown names are throttled like real ones, so the throttle itself tells nothing about which names exist. A
success clears the account's record, not the address's (one valid account must not reset an attacker's
address). Records are kept in memory, per app replica: an attacker never turns failed guesses into database
writes that would compete with labelers' submits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


class LoginThrottle:
    """Growing delays and a temporary lock after failed log-ins; thread-safe."""

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        lock_after: int = 10,
        lock_seconds: float = 15 * 60,
        forget_after: float = 15 * 60,
        max_records: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures, self.base_delay, self.max_delay = free_failures, base_delay, max_delay
        self.lock_after, self.lock_seconds, self.forget_after = lock_after, lock_seconds, forget_after
        self.max_records, self.clock = max_records, clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str) -> tuple[str, str]:
        return f"user:{name.strip().lower()}", f"addr:{address}"

    def wait_seconds(self, name: str, address: str) -> float:
        """Seconds before this name from this address may try again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [r.blocked_until - now for k in self._keys(name, address) if (r := self._records.get(k))]
        return max([0.0, *waits])

    def failed(self, name: str, address: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._records) >= self.max_records:
                self._forget_old(now)
            for key in self._keys(name, address):
                record = self._records.setdefault(key, _Record())
                if now - record.last_failure > self.forget_after:
                    record.failures = 0
                record.failures += 1
                record.last_failure = now
                record.blocked_until = now + self._delay(record.failures)
                if record.failures == self.lock_after:
                    logger.warning(
                        "log-in locked for %.0f s after %d failures: %s",
                        self.lock_seconds,
                        record.failures,
                        key,
                    )
        logger.info("failed log-in for %r from %s", name, address)

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._records.pop(self._keys(name, address)[0], None)

    def _delay(self, failures: int) -> float:
        if failures >= self.lock_after:
            return self.lock_seconds
        if failures < self.free_failures:
            return 0.0
        return min(self.max_delay, self.base_delay * 2 ** (failures - self.free_failures))

    def _forget_old(self, now: float) -> None:
        stale = [
            k
            for k, r in self._records.items()
            if now - r.last_failure > self.forget_after and r.blocked_until < now
        ]
        for key in stale:
            del self._records[key]
