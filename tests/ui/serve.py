"""Start the real app (`python -m app serve`, as `rankloop serve` does) as a subprocess on a tiny model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlmodel import Session

from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.users import add_user
from models.tiny import save_tiny_checkpoint
from tests.labeler.helpers import make_sets

REPO = Path(__file__).resolve().parents[2]


def seed_home(
    home: Path, *, labelers: list[str], sets: int, db: str | None = None, labels_needed: int = 1
) -> tuple[str, Path]:
    """A store with labelers (password `password-NAME`), v0 on a tiny checkpoint, and `sets` waiting sets."""
    model = save_tiny_checkpoint(home / "tiny-model")
    url = db or f"sqlite:///{home / 'rankloop.db'}"
    engine = make_engine(url)
    with Session(engine) as session:
        add_user(session=session, name="admin", password="password-admin", role="admin")
        for name in labelers:
            add_user(session=session, name=name, password=f"password-{name}")
        pv = ensure_initial_policy(session=session, base_model=str(model))
        make_sets(session, sets, n=4, version_id=pv.id, labels_needed=labels_needed)
    engine.dispose()
    return url, model


def start_serve(home: Path, port: int, model: Path, *args: str, db: str | None = None) -> subprocess.Popen:
    """`rankloop serve` on `port`; returns once it answers HTTP (or raises with its log)."""
    log = (home / f"serve-{port}.log").open("ab")
    cmd = [
        sys.executable,
        "-m",
        "app",
        "serve",
        "--home",
        str(home),
        "--port",
        str(port),
        "--model",
        str(model),
    ]
    cmd += ["--max-new-tokens", "8", *args, *(["--db", db] if db else [])]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"serve exited with {proc.returncode}: {(home / f'serve-{port}.log').read_text()[-3000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"serve did not answer on port {port} within 120 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
