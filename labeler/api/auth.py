"""Who calls the API: a personal token (`Authorization: Bearer rlk_...`, labeler/store/api_tokens.py) or, for the
API's own pages (/api/v1/docs), an admin logged in to the app in the same browser. Every call made with a token is
logged (time, address, method, path, status) once its response has gone out.

    @router.get("/things")
    def things(caller: Caller = Depends(admin)) -> ...
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labeler.store.api_tokens import record_use, token_user
from labeler.store.db import read_session
from labeler.store.tables import id_of
from labeler.ui.guard import ACCOUNT_KEY

TOKEN_KEY = "rankloop.token_id"  # where the token check leaves the token's id for the use log


@dataclass(frozen=True)
class Caller:
    user_id: int
    name: str
    role: str
    token_id: int | None  # None: a logged-in browser session


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def caller(request: Request) -> Caller:
    """The token's user (role read now), else a browser session's account; 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if header:
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized("use `Authorization: Bearer <token>`")
        with read_session(engine_of(request)) as session:
            found = token_user(session=session, secret=secret.strip())
            if found is None:
                raise _unauthorized("this token is unknown, revoked, or its user is disabled")
            token, user = found
            request.scope[TOKEN_KEY] = id_of(token)
            return Caller(id_of(user), user.name, user.role, id_of(token))
    account = request.scope.get(ACCOUNT_KEY)
    if account is not None:
        return Caller(account.user_id, account.name, account.role, None)
    raise _unauthorized("send a personal API token: `Authorization: Bearer <token>` (Admin > Users)")


def labeler(who: Caller = Depends(caller)) -> Caller:
    """Anyone who labels: labelers and admins."""
    return who


def admin(who: Caller = Depends(caller)) -> Caller:
    """Admins only, checked on every call with the role as it is now."""
    if who.role != "admin":
        raise HTTPException(status_code=403, detail=f"admins only: {who.name} is a {who.role}")
    return who


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


class UseLog:
    """Pure ASGI middleware: after a response made for a token has gone out, the call is logged (in a thread,
    outside the request's own work)."""

    def __init__(self, app: ASGIApp, engine: Engine):
        self.app, self.engine = app, engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            token_id = scope.get(TOKEN_KEY)
            if token_id is not None:
                client = scope.get("client") or ("", 0)
                root, path = scope.get("root_path", ""), scope["path"]
                path = path if path.startswith(root) else root + path
                method = scope.get("method", "")
                await anyio.to_thread.run_sync(self._log, token_id, client[0], method, path, status)

    def _log(self, token_id: int, address: str, method: str, path: str, status: int) -> None:
        with Session(self.engine) as session:
            record_use(
                session=session, token_id=token_id, address=address, method=method, path=path, status=status
            )
