"""Revisions by a constitution (Constitutional AI's first phase) in the pre-generation worker: for a share of new
sets, the current policy critiques one of the set's answers by a principle drawn at random, then rewrites it; the
rewrite joins the set as one more answer (origin `revision`), shown blind like the others, with its principle,
critique and source kept for Browse. Two batched model calls per step (all critiques, then all rewrites), run with
no transaction open, like the answers themselves.

    added = add_revisions(pool, prompts, sets, constitution, share=0.25, sampling=params, rng=rng)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from labeler.store.constitution import ConstitutionText
from labeler.store.store import CompletionIn, last_user_message
from models.generation import PolicyBackend, SamplingParams


@dataclass(frozen=True)
class Planned:
    """One revision to make: which set, which of its answers, by which principle."""

    set_index: int
    answer: int
    principle: str


def user_turn(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def plan_revisions(
    sets: list[list[CompletionIn]], principles: list[str], share: float, rng: random.Random
) -> list[Planned]:
    """A `share` of the sets, each with one of its answers and one principle, drawn with `rng`."""
    return [
        Planned(i, rng.randrange(len(answers)), rng.choice(principles))
        for i, answers in enumerate(sets)
        if answers and rng.random() < share
    ]


def add_revisions(
    pool: PolicyBackend,
    prompts: list[list[dict]],
    sets: list[list[CompletionIn]],
    constitution: ConstitutionText,
    *,
    share: float,
    sampling: SamplingParams,
    rng: random.Random,
    policy_id: int | None = None,
) -> dict[int, float]:
    """Append a revision to a `share` of `sets` (in place); returns the seconds spent per set revised, which the
    worker adds to the set's generation time. An empty critique or rewrite adds nothing."""
    planned = plan_revisions(sets, constitution.principles, share, rng) if share > 0 else []
    if not planned:
        return {}
    start = time.perf_counter()
    requests = [last_user_message(prompts[p.set_index]) for p in planned]  # the whole talk stays the prompt
    answers = [sets[p.set_index][p.answer].text for p in planned]
    asks = [
        user_turn(constitution.critique(prompt=r, answer=a, principle=p.principle))
        for p, r, a in zip(planned, requests, answers, strict=True)
    ]
    critiques = [outs[0].text.strip() for outs in pool.generate(asks, 1, sampling)]
    rewrites = [
        user_turn(constitution.revision(prompt=r, answer=a, principle=p.principle, critique=c))
        for p, r, a, c in zip(planned, requests, answers, critiques, strict=True)
    ]
    revised = [outs[0] for outs in pool.generate(rewrites, 1, sampling)]
    each = (time.perf_counter() - start) / len(planned)
    spent: dict[int, float] = {}
    for p, critique, out in zip(planned, critiques, revised, strict=True):
        if not critique or not out.text.strip():
            continue
        detail = {"principle": p.principle, "critique": critique, "constitution": constitution.version}
        sets[p.set_index].append(
            CompletionIn(
                out.text,
                out.token_count,
                out.finish_reason,
                policy_id,
                origin="revision",
                source_position=p.answer,
                detail=detail,
            )
        )
        spent[p.set_index] = each
    return spent
