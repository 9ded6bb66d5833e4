"""The pre-generation worker: keeps at least B unlabeled completion sets ready for the current policy version,
so labelers never wait for a model. Runs as a background thread in the app process.

    worker = PregenWorker(engine=engine, pool=pool, config=PregenConfig(buffer=8, n=4))
    worker.start(); ...; worker.stop()

When the current version changes, the worker activates the new adapter (no base reload) and new sets come from
it; older unlabeled sets stay valid and are served after the new ones (see `lease_next_set`). A generation
error is logged and retried with exponential backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.policies import active_labelers, count_waiting_sets, current_policy, sample_prompts
from labeler.settings import get_setting, labels_needed
from labeler.store import CompletionIn, add_completion_set
from labeler.tables import PolicyVersion
from models.generation import SamplingParams
from models.policy import PolicyPool
from models.vllm_backend import VLLMBackend

logger = logging.getLogger(__name__)


@dataclass
class PregenConfig:
    buffer: int | None = field(
        default=None,
        metadata={
            "help": "unlabeled sets to keep ready; None: 2 per labeler active in the last hour, at least 4"
        },
    )
    n: int = field(default=4, metadata={"help": "completions per set"})
    batch_prompts: int = field(default=4, metadata={"help": "prompts generated per call"})
    labels_needed: int | None = field(
        default=None, metadata={"help": "labelers per set; None: the admin's setting"}
    )
    human_eval: bool | None = field(
        default=None, metadata={"help": "mix current and parent completions; None: the admin's setting"}
    )
    sampling: SamplingParams = field(default_factory=SamplingParams)
    idle_seconds: float = field(default=2.0, metadata={"help": "pause when the buffer is full"})
    max_backoff_seconds: float = field(default=60.0, metadata={"help": "longest wait after repeated errors"})


@dataclass
class PregenStatus:
    sets_written: int = 0
    errors: int = 0
    last_error: str | None = None
    version: int | None = None


class PregenWorker:
    """Fill, sleep, refill. `step()` does one round and is what tests drive directly."""

    def __init__(self, *, engine: Engine, pool: PolicyPool | VLLMBackend, config: PregenConfig):
        self.engine, self.pool, self.config = engine, pool, config
        self.status = PregenStatus()
        self._activated: tuple[int, str | None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> int:
        """Top the current version's buffer up by at most one batch; returns sets written."""
        with Session(self.engine) as session:
            policy = current_policy(session=session)
            if policy is None:
                return 0
            wanted = (policy.version, policy.adapter_path)
            if self._activated != wanted:
                self.pool.activate(version=policy.version, adapter_path=policy.adapter_path)
                self._activated = wanted
            self.status.version = policy.version
            target = self.config.buffer or max(4, 2 * active_labelers(session=session))
            missing = target - count_waiting_sets(session=session, policy_version_id=policy.id)
            if missing <= 0:
                return 0
            prompts = sample_prompts(
                session=session, count=min(missing, self.config.batch_prompts), policy_version_id=policy.id
            )
            if not prompts:
                return 0
            parent = session.get(PolicyVersion, policy.parent_id) if policy.parent_id else None
            mix = (
                self.config.human_eval
                if self.config.human_eval is not None
                else bool(get_setting(session=session, key="human_eval", default=False))
            )
            k = self.config.labels_needed or labels_needed(session=session)
            start = time.perf_counter()
            sets = self._generate([p.messages for p in prompts], policy, parent if mix else None)
            seconds = (time.perf_counter() - start) / len(prompts)
            for prompt, completions in zip(prompts, sets, strict=True):
                add_completion_set(
                    session=session,
                    prompt_id=prompt.id,
                    completions=completions,
                    policy_version_id=policy.id,
                    sampling={
                        **self.config.sampling.to_dict(),
                        "human_eval": parent.version if mix and parent else None,
                    },
                    labels_needed=k,
                    generation_seconds=seconds,
                    commit=False,
                )
            session.commit()
        self.status.sets_written += len(prompts)
        return len(prompts)

    def _generate(
        self, prompts: list[list[dict]], policy: PolicyVersion, parent: PolicyVersion | None
    ) -> list[list[CompletionIn]]:
        """N completions per prompt from the current version; for human evaluation, half from its parent."""
        n, sampling = self.config.n, self.config.sampling
        if parent is None:
            return [
                [CompletionIn(c.text, c.token_count, c.finish_reason) for c in s]
                for s in self.pool.generate(prompts, n, sampling)
            ]
        new = self.pool.generate(prompts, n - n // 2, sampling)
        old = self.pool.generate_as(
            version=parent.version,
            adapter_path=parent.adapter_path,
            prompts=prompts,
            n=n // 2,
            sampling=sampling,
        )
        return [
            [CompletionIn(c.text, c.token_count, c.finish_reason, policy.id) for c in a]
            + [CompletionIn(c.text, c.token_count, c.finish_reason, parent.id) for c in b]
            for a, b in zip(new, old, strict=True)
        ]

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                wrote = self.step()
                failures = 0
            except Exception as exc:  # keep serving: log, back off, retry
                failures += 1
                self.status.errors += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(self.config.max_backoff_seconds, 2.0**failures)
                logger.exception("pre-generation failed (%d in a row); retrying in %.0fs", failures, delay)
                self._stop.wait(delay)
                continue
            if wrote == 0:
                self._stop.wait(self.config.idle_seconds)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pregen", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the loop to stop and wait for the current batch to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
