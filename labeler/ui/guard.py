"""Checks in front of every request to the Gradio app: sessions that have ended, request sizes, uploads and export
downloads.

- **Sessions end at once.** Gradio keeps log-in tokens in memory (`app.tokens`, token -> user name); the guard
  swaps that map for `IssuedTokens`, which stamps each token when Gradio issues it at log-in. Each request
  carrying a token is checked against the users table (reread at most once a second per user, in a worker
  thread): a disabled or deleted user, or a session issued before `User.sessions_valid_after` (a password reset,
  a disable, a log-out: each ends every session issued before it, on every replica, used or not), loses its
  token within that second, so handlers, uploads and file downloads all see a logged-out client. A token with
  no stamp counts as issued at the epoch.
- **Bounded requests.** Bodies are capped at `MAX_REQUEST_BYTES` (a submit is a few kilobytes), uploads at
  `MAX_UPLOAD_BYTES`; larger ones get HTTP 413 before the body is read.
- **The API's description is for admins** (`/openapi.json`, `/docs`, Gradio's `/info` and its monitoring pages);
  a labeler gets `/info` with the endpoints a labeler may call only (what `gradio_client` reads), anonymous
  clients nothing. A labeler's page and its `/config` come without the Admin tab's components and events
  (labeler/ui/page_filter.py; `admin_blocks`: their ids).
- **Uploads and exports are for admins.** Only admins upload files (labelers' pages have no upload control).
  Export archives are served from `HOME/exports` at `/exports/NAME.zip` to admins only, never through Gradio's
  file cache (which serves any logged-in user).

    launch(..., app_kwargs={"middleware": [Middleware(SessionGuard, engine=engine, exports=home / "exports")]})
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.responses import FileResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labeler.store.db import read_session
from labeler.store.tables import as_utc, id_of, utcnow
from labeler.store.users import end_sessions, get_user
from labeler.ui.page_filter import labelers_config, labelers_info, labelers_page

logger = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1 << 20
MAX_UPLOAD_BYTES = 64 << 20
UPLOAD_PATH = "/gradio_api/upload"
EXPORTS_PATH = "/exports/"
RECHECK_SECONDS = 1.0  # how stale a replica's view of an account may be
LOGOUT_PATHS = ("/logout", "/logout/")
API_IMPORT_PATH = "/api/v1/import/"
ADMIN_PAGE_PATH = "/admin"  # the admin pages (labeler/ui/app.py ADMIN_PAGE)  # imports through the REST API may be as large as uploads
ACCOUNT_KEY = "rankloop.account"  # the request's logged-in Account (or None), for the REST API
# descriptions of the API and the server's internals (Gradio's and FastAPI's), for admins only
ADMIN_ONLY_ROUTES = frozenset(
    {"openapi.json", "docs", "redoc", "info", "monitoring", "profiling", "run-history"}
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXPORT_NAME = re.compile(r"^[\w.-]+\.zip$")


@dataclass(frozen=True)
class Account:
    user_id: int
    name: str
    role: str
    disabled: bool
    sessions_valid_after: datetime | None


class IssuedTokens(dict[str, str]):
    """Gradio's token -> user name map, with when each token was issued (set by Gradio's log-in route)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.issued: dict[str, datetime] = {}

    def __setitem__(self, token: str, name: str) -> None:
        self.issued[token] = utcnow()
        super().__setitem__(token, name)

    def __delitem__(self, token: str) -> None:
        self.issued.pop(token, None)
        super().__delitem__(token)

    def pop(self, token, *default):
        self.issued.pop(token, None)
        return super().pop(token, *default)

    def issued_at(self, token: str) -> datetime:
        """When the token was issued; the epoch for one issued before this map was in place."""
        return self.issued.get(token, EPOCH)


def issued_tokens(app: Any) -> IssuedTokens:
    """The app's token map as an `IssuedTokens`, swapped in on the first request (every log-in is a request that
    passes the guard before Gradio issues its token, so none is issued unstamped)."""
    tokens = getattr(app, "tokens", None)
    if isinstance(tokens, IssuedTokens):
        return tokens
    swapped = IssuedTokens(tokens or {})
    if app is not None and hasattr(app, "tokens"):
        app.tokens = swapped
    return swapped


class SessionGuard:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        engine: Engine,
        exports: Path,
        recheck_seconds: float = RECHECK_SECONDS,
        admin_blocks: Collection[int] = (),
        clock: Callable[[], float] = time.monotonic,
    ):
        self.engine, self.exports, self.recheck_seconds = engine, Path(exports), recheck_seconds
        self.clock = clock
        self.admin_blocks = frozenset(admin_blocks)
        self.bounded = RequestBodyLimitMiddleware(app, max_body_size=MAX_REQUEST_BYTES)
        self.uploads = RequestBodyLimitMiddleware(app, max_body_size=MAX_UPLOAD_BYTES)
        self.accounts: dict[str, tuple[float, Account | None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.bounded(scope, receive, send)
            return
        account = await self._account(scope)
        scope[ACCOUNT_KEY] = account  # the REST API's pages read who is logged in (labeler/api/auth.py)
        path = scope["path"]
        if path in LOGOUT_PATHS and account is not None:
            await anyio.to_thread.run_sync(self._end_sessions, account.name)
        if admin_only(path) and account is None:
            await _refuse(scope, receive, send, 403, "The API's description is for logged-in users.")
        elif admin_only(path) and account is not None and account.role != "admin":
            if _route(path) != "info":
                await _refuse(scope, receive, send, 403, "The API's description is for admins.")
            else:  # a labeler's script (gradio_client) reads the endpoints it may call, and no others
                await self.bounded(scope, receive, rewrite_body(send, _json_filter(labelers_info)))
        elif account is not None and account.role != "admin" and path.rstrip("/") == ADMIN_PAGE_PATH:
            await _refuse(scope, receive, send, 403, "The admin pages are for admins.")
        elif account is not None and account.role != "admin" and self._describes_the_page(scope):
            await self.bounded(scope, receive, rewrite_body(send, self._labelers_view(path)))
        elif path.startswith(
            API_IMPORT_PATH
        ):  # as large as uploads; the API checks the token and role itself
            await self.uploads(scope, receive, send)
        elif path.startswith(UPLOAD_PATH):
            if account is None or account.role != "admin":
                await _refuse(scope, receive, send, 403, "Only admins upload files.")
                return
            await self.uploads(scope, receive, send)
        elif path.startswith(EXPORTS_PATH):
            await self._export(scope, receive, send, account, path[len(EXPORTS_PATH) :])
        else:
            await self.bounded(scope, receive, send)

    async def _account(self, scope: Scope) -> Account | None:
        """The logged-in account of this request, or None; revokes the token of a session that has ended."""
        tokens = issued_tokens(scope.get("app"))
        for token in _session_tokens(scope):
            name = tokens.get(token)
            if name is None:
                continue
            account = await self._lookup(name)
            if _still_valid(account, tokens.issued_at(token)):
                return account
            tokens.pop(token, None)
            logger.info("session of %r ended (disabled, removed or password reset)", name)
        return None

    async def _lookup(self, name: str) -> Account | None:
        now = self.clock()
        cached = self.accounts.get(name)
        if cached is not None and now - cached[0] < self.recheck_seconds:
            return cached[1]
        account = await anyio.to_thread.run_sync(self._read_account, name)
        self.accounts[name] = (now, account)
        return account

    def _describes_the_page(self, scope: Scope) -> bool:
        """A GET of the page's HTML or of its config, which describe the whole app's layout."""
        return scope.get("method") == "GET" and (
            scope["path"] in ("/", "") or _route(scope["path"]) == "config"
        )

    def _labelers_view(self, path: str) -> Callable[[bytes], bytes]:
        """The filter (labeler/ui/page_filter.py) that takes the admin layout out of the page or its config."""
        if _route(path) == "config":
            return _json_filter(lambda config: labelers_config(config, self.admin_blocks))
        return lambda html: labelers_page(html, self.admin_blocks)

    def _end_sessions(self, name: str) -> None:
        with Session(self.engine) as session:
            end_sessions(session=session, name=name)
        self.accounts.pop(name, None)  # read again on the next request

    def _read_account(self, name: str) -> Account | None:
        with read_session(self.engine) as session:
            user = get_user(session=session, name=name)
            if user is None:
                return None
            return Account(id_of(user), user.name, user.role, user.disabled, user.sessions_valid_after)

    async def _export(
        self, scope: Scope, receive: Receive, send: Send, account: Account | None, name: str
    ) -> None:
        if account is None or account.role != "admin":
            await _refuse(scope, receive, send, 403, "Exports are for admins.")
            return
        path = self.exports / name
        if not _EXPORT_NAME.match(name) or not path.is_file():
            await _refuse(scope, receive, send, 404, "No such export.")
            return
        await FileResponse(path, filename=name)(scope, receive, send)


def _route(path: str) -> str:
    return path.removeprefix("/gradio_api").strip("/").split("/", 1)[0]


def admin_only(path: str) -> bool:
    """Whether `path` is one of ADMIN_ONLY_ROUTES, at the root or under /gradio_api."""
    return _route(path) in ADMIN_ONLY_ROUTES


def hold_body(
    send: Send,
    finish: Callable[[Message, bytes], tuple[Message, bytes]],
    *,
    hold: Callable[[Message], bool] = lambda start: True,
    pass_start: Callable[[Message], Message] = lambda start: start,
) -> Send:
    """A `send` that holds the body of a response `hold` picks by its start, then sends `finish(start, body)`
    with the new body's length; another response goes on at once, its start through `pass_start`."""
    start: Message | None = None
    body: list[bytes] = []

    async def held(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            if hold(message):
                start = message
            else:
                await send(pass_start(message))
            return
        if start is None:  # a response not held: its body passes through
            await send(message)
            return
        body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        done, page = finish(start, b"".join(body))
        headers = [(k, v) for k, v in done.get("headers", []) if k != b"content-length"]
        await send({**done, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
        await send({"type": "http.response.body", "body": page})

    return held


def rewrite_body(send: Send, transform: Callable[[bytes], bytes]) -> Send:
    """A `send` that passes a successful response's body through `transform` (bodies this applies to are JSON or
    HTML that Gradio writes whole, uncompressed)."""
    return hold_body(
        send, lambda start, body: (start, transform(body) if start.get("status") == 200 else body)
    )


def _json_filter(transform: Callable[[dict], dict]) -> Callable[[bytes], bytes]:
    return lambda body: json.dumps(transform(json.loads(body or b"{}"))).encode()


def _still_valid(account: Account | None, started: datetime) -> bool:
    if account is None or account.disabled:
        return False
    after = account.sessions_valid_after
    return after is None or started > as_utc(after)


def _session_tokens(scope: Scope) -> list[str]:
    raw = b"; ".join(value for key, value in scope.get("headers", []) if key == b"cookie")
    if not raw:
        return []
    cookies = SimpleCookie()
    try:
        cookies.load(raw.decode("latin-1"))
    except Exception:  # a malformed cookie header names no session
        return []
    return [morsel.value for key, morsel in cookies.items() if key.startswith("access-token")]


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    await JSONResponse({"error": message}, status_code=status)(scope, receive, send)


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
CSP_BASE = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "media-src 'self' data: blob:; connect-src 'self'; form-action 'self'; frame-ancestors 'self'; "
    "base-uri 'self'; object-src 'none'"
)


class ContentSecurityPolicy:
    """Pure ASGI middleware: a Content-Security-Policy header (and `X-Content-Type-Options: nosniff`) on every
    response. Pages load images, fonts and
    data only from this app (no remote images, so no beacon sees a labeler's address), post forms only to it,
    and run only its own scripts: the inline scripts of each HTML page are allowed by their SHA-256 hashes,
    which turns inline event handlers off (`eval` stays on: Gradio runs the app's keyboard script with it)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send_with_policy = hold_body(
            send,
            lambda start, page: (_with_header(start, csp(page)), page),  # hashes of the page's inline scripts
            hold=_is_html,
            pass_start=lambda start: _with_header(start, csp(b"")),
        )
        await self.app(scope, receive, send_with_policy)


def csp(page: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.finditer(page)
    )
    return f"{CSP_BASE}; script-src 'self' 'unsafe-eval' {hashes}".rstrip()


def _is_html(start: Message) -> bool:
    return any(k == b"content-type" and v.startswith(b"text/html") for k, v in start.get("headers", []))


def _with_header(start: Message, policy: str) -> Message:
    """The response start with the policy and `nosniff` (browsers take each response as the type it names)."""
    mine = (b"content-security-policy", b"x-content-type-options")
    headers = [(k, v) for k, v in start.get("headers", []) if k not in mine]
    extra = [(b"content-security-policy", policy.encode()), (b"x-content-type-options", b"nosniff")]
    return {**start, "headers": [*headers, *extra]}
