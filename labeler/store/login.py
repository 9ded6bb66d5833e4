"""Log-in throttling by reservation: an attempt is recorded before its password is checked, per account name and
per (account, address) pair, so N guesses at one account sent at once see N-1 earlier attempts. Per client
address, failures count once checked, and at most MAX_CHECKS_PER_ADDRESS checks from one address run at once
(the others wait their turn, then see the failures before them: `labeler/ui/auth.py`), so a burst spread over
many accounts is bounded too, while a team behind one address can still log in together.

    throttle = LoginThrottle()
    if (wait := throttle.reserve(name, address)) > 0: refuse, "try again in {wait} s"   # nothing recorded
    ok = authenticate(...)                  # the same cost for unknown names as for wrong passwords
    throttle.settle(name, address, ok)

The first `free_failures` mistakes cost nothing (typos); from then on each failure doubles the wait before the
next attempt (1 s, 2 s, 4 s, ... up to `max_delay`). `lock_after` failures lock the (account, address) pair and
the address for `lock_seconds`; the account as a whole is only delayed, never locked, and never for more than
`account_max_delay`, so a stranger's burst of wrong passwords cannot keep a labeler out of their shift. Unknown
names are throttled like real ones, so the throttle itself tells nothing about which names exist. A success
clears the account's and the pair's records, not the address's (one valid account must not reset an attacker's
address). Records are kept in memory, per app replica: an attacker never turns
failed guesses into database writes that would compete with labelers' submits.
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
    """Growing delays and a temporary lock after failed log-ins, attempts reserved before the check; thread-safe."""

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        account_max_delay: float = 30.0,
        lock_after: int = 10,
        lock_seconds: float = 15 * 60,
        forget_after: float = 15 * 60,
        max_records: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free_failures, self.base_delay, self.max_delay = free_failures, base_delay, max_delay
        self.account_max_delay = account_max_delay
        self.lock_after, self.lock_seconds, self.forget_after = lock_after, lock_seconds, forget_after
        self.max_records, self.clock = max_records, clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str) -> tuple[str, str, str]:
        """The account's, the address's and the pair's record keys."""
        account = name.strip().lower()
        return f"user:{account}", f"addr:{address}", f"pair:{account}\n{address}"

    def wait_seconds(self, name: str, address: str) -> float:
        """Seconds before this name from this address may try again (0: now); records nothing."""
        now = self.clock()
        with self._lock:
            return self._wait(self._keys(name, address), now)

    def reserve(self, name: str, address: str) -> float:
        """Atomically: the wait, if there is one (the attempt is refused and nothing recorded); else 0, with the
        attempt recorded on the account and the pair as a failure until `settle` says it was right."""
        now = self.clock()
        account, addr, pair = self._keys(name, address)
        with self._lock:
            wait = self._wait((account, addr, pair), now)
            if wait > 0:
                return wait
            if len(self._records) >= self.max_records:
                self._forget_old(now)
            for key in (account, pair):
                self._count(key, now)
        return 0.0

    def settle(self, name: str, address: str, ok: bool) -> None:
        """After the check: a right password clears the account's and the pair's records; a wrong one (already
        counted on both) counts on the address."""
        account, addr, pair = self._keys(name, address)
        with self._lock:
            if ok:
                self._records.pop(account, None)
                self._records.pop(pair, None)
            else:
                self._count(addr, self.clock())
        if not ok:
            logger.info("failed log-in for %r from %s", name, address)

    def _wait(self, keys: tuple[str, ...], now: float) -> float:
        waits = [r.blocked_until - now for k in keys if (r := self._records.get(k))]
        return max([0.0, *waits])

    def _count(self, key: str, now: float) -> None:
        record = self._records.setdefault(key, _Record())
        if now - record.last_failure > self.forget_after:
            record.failures = 0
        record.failures += 1
        record.last_failure = now
        record.blocked_until = now + self._delay(key, record.failures)
        if record.failures == self.lock_after and not key.startswith("user:"):
            logger.warning(
                "log-in locked for %.0f s after %d failures: %r", self.lock_seconds, record.failures, key
            )

    def _delay(self, key: str, failures: int) -> float:
        if failures < self.free_failures:
            return 0.0
        if key.startswith("user:"):  # the account as a whole: delayed, never locked
            return min(self.account_max_delay, self._growing(failures))
        if failures >= self.lock_after:
            return self.lock_seconds
        return self._growing(failures)

    def _growing(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (failures - self.free_failures))

    def _forget_old(self, now: float) -> None:
        stale = [
            k
            for k, r in self._records.items()
            if now - r.last_failure > self.forget_after and r.blocked_until < now
        ]
        for key in stale:
            del self._records[key]
