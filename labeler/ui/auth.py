"""The log-in check Gradio calls, off the event loop, below the request handlers' priority, and throttled.

Gradio awaits an `async` auth callable on its event loop, so the check itself (a read of the users table and
one scrypt, 75-100 ms of CPU here) runs in a thread of its own pool and never stalls other requests. The pool
has a thread per core, each at nice +5 on Linux: when a team logs in at the start of a shift the hashes use
every core the web handlers leave (scrypt releases the interpreter lock), and a submit that arrives meanwhile
gets most of its core (CFS weights 1024 against 335). Before, at most half the cores hashed at normal
priority: on 2 cores the 32 log-ins of `bench/labeling.py` queued behind one hasher (log-in p95 1.3-1.8 s)
while each hash still competed with the server's thread. Gradio passes only the name and password;
`ClientAddressMiddleware` records the client's address for the throttle (uvicorn already replaces it with
X-Forwarded-For's when the request comes through a proxy on the same machine).

    launch(..., auth=make_auth(engine, LoginThrottle()), app_kwargs={"middleware": [CLIENT_ADDRESS_MIDDLEWARE]})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

from fastapi import HTTPException
from sqlalchemy.engine import Engine
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from labeler.store.db import read_session
from labeler.store.login import LoginThrottle
from labeler.store.users import authenticate

logger = logging.getLogger(__name__)
CLIENT_ADDRESS: ContextVar[str] = ContextVar("rankloop_client_address", default="unknown")


class ClientAddressMiddleware:
    """Pure ASGI middleware: puts the request's client address where the auth callable can read it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client"):
            CLIENT_ADDRESS.set(scope["client"][0])
        await self.app(scope, receive, send)


CLIENT_ADDRESS_MIDDLEWARE = Middleware(ClientAddressMiddleware)


HASHING_NICENESS = 5  # below the server's other threads (0), above background model processes (nice 10)


def lower_this_thread(niceness: int = HASHING_NICENESS) -> None:
    """Lower the calling thread's priority (Linux sets nice values per thread); elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except OSError as exc:
        logger.warning("could not lower the log-in hashing thread's priority: %s", exc)


def hashing_pool() -> ThreadPoolExecutor:
    """One low-priority thread per core for password checks."""
    return ThreadPoolExecutor(
        max_workers=os.cpu_count() or 2, thread_name_prefix="login-hash", initializer=lower_this_thread
    )


MAX_CHECKS_PER_ADDRESS = 4  # password checks from one client address at once; more wait their turn


class AddressGates:
    """At most `limit` checks at once per client address (asyncio, on the server's event loop); an address's
    semaphore is dropped when nobody holds or waits for it."""

    def __init__(self, limit: int = MAX_CHECKS_PER_ADDRESS):
        self.limit = limit
        self._gates: dict[str, tuple[asyncio.Semaphore, int]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        gate, users = self._gates.get(address, (asyncio.Semaphore(self.limit), 0))
        self._gates[address] = (gate, users + 1)
        try:
            async with gate:
                yield
        finally:
            gate, users = self._gates[address]
            if users == 1:
                del self._gates[address]
            else:
                self._gates[address] = (gate, users - 1)


def make_auth(
    engine: Engine, throttle: LoginThrottle, pool: ThreadPoolExecutor | None = None
) -> Callable[[str, str], Awaitable[bool]]:
    """The log-in check: an enabled user with this password, unless failed attempts ask for a pause first. Each
    attempt waits for its address's turn (`AddressGates`), then is reserved in the throttle before the hash
    runs, so a concurrent burst sees every attempt before it."""

    hashing = pool or hashing_pool()
    gates = AddressGates()

    def verify(name: str, password: str) -> bool:
        with read_session(engine) as session:
            return authenticate(session=session, name=name, password=password) is not None

    async def check(username: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        async with gates.turn(address):
            wait = throttle.reserve(
                username, address
            )  # counted as a failure before the check, unless refused
            if wait > 0:
                logger.warning(
                    "log-in for %r from %s refused: throttled for %.0f s more", username, address, wait
                )
                raise HTTPException(
                    status_code=429,
                    detail=f"Too many failed log-ins. Try again in {math.ceil(wait)} s.",
                    headers={"Retry-After": str(math.ceil(wait))},
                )
            ok = await asyncio.get_running_loop().run_in_executor(hashing, verify, username, password)
            throttle.settle(username, address, ok)
        return ok

    return check
