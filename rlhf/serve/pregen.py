"""The pre-generation worker: keeps at least B unlabeled completion sets ready for the current policy version,
so labelers never wait for a model.

    worker = PregenWorker(engine=engine, pool=pool, config=PregenConfig(buffer=8, n=4))
    worker.start(); ...; worker.stop()          # a thread (tests, `rankloop serve --generator thread`)
    python -m rlhf.serve.pregen_process --home runs   # its own process at a low priority (what `rankloop serve` runs)

Each step reads what to generate in one short read-only transaction and closes it, runs the model with no
transaction open, then writes the new sets in one short write transaction: the store's write lock is never held
across a model call. When several app replicas share one store, only the holder of the `pregen` worker lease
generates; a keeper thread renews the lease while a batch runs, and another replica takes it over once it
expires (its holder died) or is released (its holder stopped).

When the current version changes, the worker activates the new adapter (no base reload) and new sets come from
it; older unlabeled sets stay valid and are served after the new ones (see `lease_next_set`). A generation
error is logged and retried with exponential backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.labels.conversations import continue_conversations, conversations
from labeler.labels.judges import judge_waiting_sets
from labeler.records.policies import (
    PolicyRef,
    active_labelers,
    count_sets,
    count_waiting_sets,
    current_policy,
    policy_ref,
    sample_prompts,
)
from labeler.records.reward_models import RewardRef, find_reward_model
from labeler.records.workers import hold_worker_lease, holder_id, release_worker_lease
from labeler.store.constitution import ConstitutionText, current_constitution, revision_share
from labeler.store.db import read_session
from labeler.store.settings import Selection, get_setting, labels_needed, selection
from labeler.store.store import CompletionIn, add_completion_set
from models.generation import PolicyBackend, SamplingParams
from models.policy import PolicyPool
from rlhf.select.design import Design
from rlhf.select.selection import Choice, PoolScorer, choose, uncertainty
from rlhf.serve.model_judges import ModelJudges
from rlhf.serve.revisions import add_revisions

logger = logging.getLogger(__name__)
LEASE_NAME = "pregen"


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
    seed: int | None = field(
        default=None,
        metadata={
            "help": "seed of which prompts get sets (and which candidates a random share keeps); None: a fresh "
            "draw each run (benchmarks pin it so that two runs label the same prompts)"
        },
    )
    idle_seconds: float = field(default=2.0, metadata={"help": "pause when the buffer is full"})
    max_backoff_seconds: float = field(default=60.0, metadata={"help": "longest wait after repeated errors"})
    lease_seconds: float = field(
        default=30.0,
        metadata={"help": "worker lease length; another replica takes over this long after a death"},
    )


@dataclass
class PregenStatus:
    sets_written: int = 0
    errors: int = 0
    last_error: str | None = None
    version: int | None = None
    holds_lease: bool = False


@dataclass
class _Plan:
    """What one step generates, read in one short transaction."""

    policy: PolicyRef
    parent: PolicyRef | None  # set when human evaluation mixes in the parent's answers
    prompts: list[tuple[int, list[dict]]]  # candidates: `keep` of them are written
    labels_needed: int
    keep: int
    selection: Selection
    reward: RewardRef | None  # the model that scores candidates (uncertainty selection), else None
    constitution: ConstitutionText | None = None  # what revisions follow, when a share of sets gets one
    revision_share: float = 0.0


class PregenWorker:
    """Fill, sleep, refill. `step()` does one round and is what tests drive directly."""

    def __init__(self, *, engine: Engine, pool: PolicyBackend, config: PregenConfig):
        self.engine, self.pool, self.config = engine, pool, config
        self.status = PregenStatus()
        self.holder = holder_id()
        self._activated: tuple[int, str | None] | None = None
        self._scorer: PoolScorer | None = None
        # Model judges borrow the pool's base; with another backend (vLLM) the base would be loaded twice.
        self._compare = ModelJudges(pool) if isinstance(pool, PolicyPool) else None
        self._designs: dict[str, Design | None] = {}
        self._rng = random.Random(config.seed)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def plan(self) -> _Plan | None:
        """Read what the buffer lacks; None when it is full (or there is nothing to generate)."""
        with read_session(self.engine) as session:
            row = current_policy(session=session)
            if row is None:
                return None
            policy = PolicyRef.of(row)
            self.status.version = policy.version
            target = self.config.buffer or max(4, 2 * active_labelers(session=session))
            missing = target - count_waiting_sets(session=session, policy_version_id=policy.id)
            chosen = selection(session=session)
            if chosen.budget:
                missing = min(
                    missing, chosen.budget - count_sets(session=session, policy_version_id=policy.id)
                )
            if missing <= 0:
                return None
            keep = min(missing, self.config.batch_prompts)
            reward = self._scoring_model(session, chosen)
            prompts = sample_prompts(
                session=session,
                count=keep * chosen.oversample if reward else keep,
                policy_version_id=policy.id,
                seed=self._rng.randrange(1 << 30),
                later_turns_first=conversations(session=session).prefer == "finish",
            )
            if not prompts:
                return None
            mix = self.config.human_eval
            if mix is None:
                mix = bool(get_setting(session=session, key="human_eval", default=False))
            parent = policy_ref(session=session, policy_id=policy.parent_id) if mix else None
            share = revision_share(session=session)
            return _Plan(
                policy=policy,
                parent=parent,
                prompts=[(p.id, p.messages) for p in prompts if p.id is not None],
                labels_needed=self.config.labels_needed or labels_needed(session=session),
                keep=keep,
                selection=chosen,
                reward=reward,
                constitution=current_constitution(session=session) if share > 0 else None,
                revision_share=share,
            )

    def _scoring_model(self, session: Session, chosen: Selection) -> RewardRef | None:
        """The latest reward model when selection is by uncertainty and this pool can score with it."""
        if chosen.mode != "uncertainty":
            return None
        if not isinstance(self.pool, PolicyPool):
            logger.warning("uncertainty selection needs the transformers backend to score; keeping every set")
            return None
        reward = find_reward_model(session=session)
        if reward is None or reward.adapter_path is None:
            logger.info("uncertainty selection: no reward model with an adapter yet; keeping every set")
            return None
        return reward

    def step(self) -> int:
        """Let the judges rank the sets waiting for them, continue the conversations whose sets were decided,
        then top the current version's buffer up by at most one batch; returns sets written."""
        judge_waiting_sets(self.engine, compare=self._compare)
        with read_session(self.engine) as session:  # off (the default): no write transaction at all
            talking = conversations(session=session).on
        if talking:
            with Session(
                self.engine
            ) as session:  # decided sets with a next message become next turns' prompts
                continue_conversations(session=session)
        plan = self.plan()
        if plan is None:
            return 0
        wanted = (plan.policy.version, plan.policy.adapter_path)
        if self._activated != wanted:
            self.pool.activate(version=plan.policy.version, adapter_path=plan.policy.adapter_path)
            self._activated = wanted
        start = time.perf_counter()
        sets = self._generate([m for _, m in plan.prompts], plan.policy, plan.parent)
        seconds = (time.perf_counter() - start) / len(plan.prompts)
        kept = self._select(plan, sets)
        revised = self._revise(plan, sets, [index for index, _ in kept])
        sampling = {
            **self.config.sampling.to_dict(),
            "human_eval": plan.parent.version if plan.parent else None,
        }
        with Session(self.engine) as session:  # one short write: no model call inside
            for index, chosen in kept:
                add_completion_set(
                    session=session,
                    prompt_id=plan.prompts[index][0],
                    completions=sets[index],
                    policy_version_id=plan.policy.id,
                    sampling=sampling,
                    labels_needed=plan.labels_needed,
                    generation_seconds=seconds + revised.get(index, 0.0),
                    selection=chosen,
                    commit=False,
                )
            session.commit()
        self.status.sets_written += len(kept)
        return len(kept)

    def _revise(self, plan: _Plan, sets: list[list[CompletionIn]], kept: list[int]) -> dict[int, float]:
        """A revision by the constitution added to a share of the kept sets (rlhf/serve/revisions.py); the
        seconds each took, by set index."""
        if plan.constitution is None or not kept:
            return {}
        chosen = [sets[i] for i in kept]
        spent = add_revisions(
            self.pool,
            [plan.prompts[i][1] for i in kept],
            chosen,
            plan.constitution,
            share=plan.revision_share,
            sampling=self.config.sampling,
            rng=self._rng,
            policy_id=plan.policy.id,
        )
        return {kept[k]: seconds for k, seconds in spent.items()}

    def _select(self, plan: _Plan, sets: list[list[CompletionIn]]) -> list[tuple[int, dict]]:
        """Which candidates to write, each with how it was chosen (every one when no model scores them)."""
        if plan.reward is None or plan.reward.adapter_path is None:
            return [(i, {"by": "random"}) for i in range(len(sets))]
        candidates = [(m, [c.text for c in s]) for (_, m), s in zip(plan.prompts, sets, strict=True)]
        try:
            measure, choices = self._choose(plan.reward.adapter_path, plan, candidates)
        except Exception:
            # a broken reward model must not stop labeling: keep a random choice, recorded as such
            logger.exception("scoring candidates with %s failed; keeping a random choice", plan.reward.name)
            measure = "none"
            choices = choose([0.0] * len(sets), keep=plan.keep, random_share=1.0, rng=self._rng)
        return [
            (
                c.index,
                {
                    "by": c.by,
                    "score": round(c.score, 4),
                    "measure": measure,
                    "reward_model": plan.reward.name,
                    "candidates": len(sets),
                },
            )
            for c in choices
        ]

    def _choose(
        self, folder: str, plan: _Plan, candidates: list[tuple[list[dict], list[str]]]
    ) -> tuple[str, list[Choice]]:
        """The measure and the kept candidates: the information a label adds where the model saved its
        precision (rlhf/select/design.py), else its members' disagreement or one head's doubt (rlhf/select/selection.py)."""
        if self._scorer is None:
            self._scorer = PoolScorer(cast(PolicyPool, self.pool))
        share, keep = plan.selection.random_share, plan.keep
        design = self._design(folder)
        if design is not None:
            chosen = design.choose_sets(
                self._scorer, folder, candidates, keep=keep, random_share=share, rng=self._rng
            )
            return "information", chosen
        measure, doubts = uncertainty(self._scorer.score_members(folder, candidates))
        return measure, choose(doubts, keep=keep, random_share=share, rng=self._rng)

    def _design(self, folder: str) -> Design | None:
        """The newest model's design, kept from step to step so that the sets chosen since it was trained count
        as known (a restarted worker starts again from the saved precision); None for a model saved without."""
        if folder not in self._designs:
            self._designs = {folder: Design.load(Path(folder))}  # the designs of older models are dropped
        return self._designs[folder]

    def _generate(
        self, prompts: list[list[dict]], policy: PolicyRef, parent: PolicyRef | None
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

    def hold_lease(self) -> bool:
        """Take or renew the `pregen` worker lease; only its holder generates."""
        try:
            with Session(self.engine) as session:
                held = hold_worker_lease(
                    session=session, name=LEASE_NAME, holder=self.holder, seconds=self.config.lease_seconds
                )
        except Exception:
            logger.exception("could not renew the pre-generation lease")
            held = False
        if held != self.status.holds_lease:
            logger.info("pre-generation lease %s (%s)", "taken" if held else "lost", self.holder)
        self.status.holds_lease = held
        return held

    def release_lease(self) -> None:
        if self.status.holds_lease:
            with Session(self.engine) as session:
                release_worker_lease(session=session, name=LEASE_NAME, holder=self.holder)
            self.status.holds_lease = False

    def _keep_lease(self) -> None:
        """Renew the lease every third of its length, also while a long batch runs in the other thread."""
        while not self._stop.wait(self.config.lease_seconds / 3):
            self.hold_lease()

    def run(self) -> None:
        """Generate while holding the lease, until `stop()`; errors back off exponentially."""
        failures = 0
        while not self._stop.is_set():
            if not self.status.holds_lease:
                self._stop.wait(self.config.lease_seconds / 3)
                continue
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
        """Run in background threads: the generator and its lease keeper."""
        self._stop.clear()
        self.hold_lease()
        self._threads = [
            threading.Thread(target=self.run, name="pregen", daemon=True),
            threading.Thread(target=self._keep_lease, name="pregen-lease", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Ask the loop to stop, wait for the current batch to finish, and hand the lease over."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        self.release_lease()
