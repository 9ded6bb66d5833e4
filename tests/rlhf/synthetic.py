"""A store with a synthetic, learnable preference: the more times an answer says 'good', the better."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from pathlib import Path

from sqlmodel import Session

from labeler.records.policies import current_policy, ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, get_or_add_prompt, submit_ranking
from labeler.store.tables import id_of
from labeler.store.users import add_user, get_user
from models.tiny import save_tiny_checkpoint

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "sea",
    "sky",
    "poem",
    "list",
    "answer",
    "question",
]


def answer(rng: random.Random, goodness: int) -> str:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
    return f"{body}{' good' * goodness}."


LABELERS_WITH_ADVERSARY = (("honest-a", False), ("honest-b", False), ("adversary", True))


def synthetic_store(tmp: Path, sets: int = 80, seed: int = 0) -> tuple[str, str]:
    """Returns (database URL, tiny checkpoint path). Rankings go through lease + submit like a labeler's."""
    url = f"sqlite:///{tmp / 'rankloop.db'}"
    checkpoint = str(save_tiny_checkpoint(tmp / "tiny"))
    with Session(make_engine(url)) as session:
        ensure_initial_policy(session=session, base_model=checkpoint)
    add_ranked_sets(url, sets, seed=seed)
    return url, checkpoint


def add_ranked_sets(
    url: str,
    sets: int,
    *,
    seed: int = 0,
    first: int = 0,
    labelers: Sequence[tuple[str, bool]] = (("sim", False),),
) -> None:
    """`sets` more sets (prompts numbered from `first`) of the current policy, each ranked by every one of
    `labelers` (name, reverses: an adversary ranks the worst answer first)."""
    rng = random.Random(seed)
    with Session(make_engine(url)) as session:
        pv = current_policy(session=session)
        assert pv is not None
        for i in range(first, first + sets):
            prompt = get_or_add_prompt(
                session=session, messages=[{"role": "user", "content": f"question {i} {rng.choice(WORDS)}"}]
            )
            goods = [0, 1, 2, 3]
            rng.shuffle(goods)
            add_completion_set(
                session=session,
                prompt_id=id_of(prompt),
                completions=[CompletionIn(answer(rng, g)) for g in goods],
                policy_version_id=pv.id,
                labels_needed=len(labelers),
            )
        for name, reverses in labelers:
            user = get_user(session=session, name=name) or add_user(
                session=session, name=name, password=f"{name}-password"
            )
            while (leased := lease_next_set(session=session, user_id=id_of(user))) is not None:
                order = sorted(
                    leased.completions, key=lambda c: -c.text.count(" good") * (-1 if reverses else 1)
                )
                ranks = {id_of(c): k + 1 for k, c in enumerate(order)}
                submit_ranking(
                    session=session,
                    ranking=RankingIn(
                        set_id=id_of(leased.set),
                        user_id=id_of(user),
                        submission_id=uuid.uuid4().hex,
                        ranks=ranks,
                    ),
                )
