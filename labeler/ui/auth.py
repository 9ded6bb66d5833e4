"""The log-in check Gradio calls, off the event loop and throttled.

Gradio awaits an `async` auth callable on its event loop, so the check itself (a read of the users table and
one scrypt, about 60 ms of CPU) runs in a worker thread and never stalls other requests. At most half the cores
hash passwords at once: when a team logs in at the start of a shift, the hashes queue for those cores instead of
taking every core from the server's event loop (on 2 cores, eight parallel hashes held back every submit). Gradio passes only the
name and password; `ClientAddressMiddleware` records the client's address for the throttle (uvicorn already
replaces it with X-Forwarded-For's when the request comes through a proxy on the same machine).

    launch(..., auth=make_auth(engine, LoginThrottle()), app_kwargs={"middleware": [CLIENT_ADDRESS_MIDDLEWARE]})
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

import anyio
from fastapi import HTTPException
from sqlalchemy.engine import Engine
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from labeler.db import read_session
from labeler.login import LoginThrottle
from labeler.users import authenticate

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


def make_auth(engine: Engine, throttle: LoginThrottle) -> Callable[[str, str], Awaitable[bool]]:
    """The log-in check: an enabled user with this password, unless failed attempts ask for a pause first."""

    hashing = anyio.CapacityLimiter(max(1, (os.cpu_count() or 2) // 2))

    def verify(name: str, password: str) -> bool:
        with read_session(engine) as session:
            return authenticate(session=session, name=name, password=password) is not None

    async def check(username: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        wait = throttle.wait_seconds(username, address)
        if wait > 0:
            logger.warning(
                "log-in for %r from %s refused: throttled for %.0f s more", username, address, wait
            )
            raise HTTPException(
                status_code=429,
                detail=f"Too many failed log-ins. Try again in {math.ceil(wait)} s.",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        ok = await anyio.to_thread.run_sync(verify, username, password, limiter=hashing)
        if ok:
            throttle.succeeded(username, address)
        else:
            throttle.failed(username, address)
        return ok

    return check
