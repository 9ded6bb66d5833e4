"""The labeling app over HTTP, as a browser tab uses it: log in, take the next set, rank it, submit. For
scripted labeling, load tests (`bench/labeling.py`) and crash tests.

    async with LabelingClient("http://127.0.0.1:7860/", "alice", "password") as client:
        await client.login()
        page = await client.next_set()                   # Page(token=..., texts=[...]): what the page holds
        page = await client.submit(page, ranks=[1, 2, 2, 3])   # ranks in display order; the next set

The page names its set only by the lease's token (in the ranking widget's value, `labeler/ui/ranker.py`); the
ranking it stores has the submission id `lease:<token>`.
"""

from __future__ import annotations

import functools
import ssl
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import certifi
import httpx


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client in the process. httpx builds one per client otherwise (56 ms of CPU
    each here): in a load test on the server's own cores, 32 labelers logging in took 1.8 s of CPU for it."""
    return ssl.create_default_context(cafile=certifi.where())


class LabelingError(RuntimeError):
    """The app refused or failed a request; the message is the app's."""


@dataclass(frozen=True)
class Page:
    """A set on a labeler's page: its lease token and the answers as shown (HTML, in display order)."""

    token: str
    texts: list[str]

    @property
    def submission_id(self) -> str:
        return f"lease:{self.token}"


class LabelingClient:
    """One labeler's session: a cookie from the log-in and a Gradio session, like one browser tab."""

    def __init__(self, url: str, name: str, password: str, *, timeout: float = 120.0):
        self.name, self.password = name, password
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout, verify=_tls_context())
        self.session_hash = uuid.uuid4().hex

    async def __aenter__(self) -> LabelingClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.http.aclose()

    async def login(self) -> None:
        """Log in and open the page as a browser does after it: the page's HTML with its configuration, which
        the server builds for every visit (its cost grows with the page's components)."""
        response = await self.http.post("login", data={"username": self.name, "password": self.password})
        if response.status_code != 200:
            raise LabelingError(
                f"log-in as {self.name} refused ({response.status_code}): {response.text[:200]}"
            )
        page = await self.http.get("", follow_redirects=True)
        if page.status_code != 200:
            raise LabelingError(f"the page refused {self.name} after log-in ({page.status_code})")

    async def next_set(self) -> Page | None:
        """Open the page as a browser does: the set leased to this labeler (the same one again until it is
        submitted), or None."""
        return page_from_outputs(await self._call("open_page", []))

    async def submit(
        self,
        current: Page,
        ranks: Sequence[int | None],
        *,
        flags: list[str | None] | None = None,
        none_acceptable: bool = False,
        comment: str = "",
    ) -> Page | None:
        """Submit ranks (display order; None leaves an answer unranked); returns the next set or None."""
        flags = flags or [None] * len(ranks)
        widget = {"token": current.token, "answers": [], "ranks": list(ranks), "flags": list(flags)}
        return page_from_outputs(await self._call("submit_ranking", [widget, none_acceptable, comment, ""]))

    async def skip(self, current: Page) -> Page | None:
        return page_from_outputs(await self._call("skip_set", [{"token": current.token}]))

    async def _call(self, api_name: str, data: list) -> list:
        """One POST to the event's route, as the page makes for an event outside the queue."""
        response = await self.http.post(
            f"gradio_api/run/{api_name}", json={"data": data, "session_hash": self.session_hash}
        )
        if response.status_code != 200:
            raise LabelingError(f"{api_name} failed ({response.status_code}): {response.text[:300]}")
        outputs = response.json()["data"]
        _raise_if_rejected(outputs)
        return outputs


WIDGET_OUTPUT = 0  # the ranking widget's place among the labeling events' outputs (labeler/ui/labeling.py)


def page_from_outputs(outputs: list) -> Page | None:
    """The set a labeling event put on the page: the token and the answers from the ranking widget's value."""
    widget = outputs[WIDGET_OUTPUT]
    token = widget.get("token") if isinstance(widget, dict) else None
    if not isinstance(token, str) or not token:
        return None
    return Page(token=token, texts=list(widget.get("answers") or []))


def _raise_if_rejected(outputs: list[Any]) -> None:
    for value in outputs:
        if isinstance(value, str) and "Not submitted" in value:
            raise LabelingError(value)


def wait_until_up(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until `rankloop serve` (the process `proc`) answers on `port`; an error if it exits or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rankloop serve on port {port} exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/config", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"rankloop serve did not answer on port {port}")
