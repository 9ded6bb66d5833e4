"""Ranking batches against trl.RewardTrainer on the same data, one epoch each, embedded default base, one run.

The data: 4-way rankings built from the shared HH file (for prompt i: its chosen > its rejected > chosen of
another dialogue > rejected of that one), so each ranking explodes into 6 pairs. The ranking path scores each
completion once per set (4 forward passes); the trl baseline scores both texts of every pair (12).
Target: ranking path >= 2x faster, held-out accuracy within 2 points.

    .venv/bin/python bench/reward_speed.py [--sets 192] [--max-length 128]
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Literal

from results import record_result  # bench/results.py: the line, kept in bench/results/
from sqlmodel import Session

from labeler.io.formats import split_hh
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, get_or_add_prompt, submit_ranking
from labeler.store.tables import id_of
from labeler.store.users import add_user
from rlhf.train.configs import RewardConfig
from rlhf.train.reward import run

HOME = os.environ.get("RANKLOOP_HOME", "runs")
HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-test-part-a.jsonl.gz"


def build_store(url: str, sets: int, max_length: int) -> None:
    """4-way sets whose four dialogues all fit in `max_length` tokens: trl's RewardTrainer drops longer pairs
    instead of truncating them, so only data that fits lets both paths train on exactly the same rankings."""
    from transformers import AutoTokenizer

    from models.resolve import resolve_model
    from rlhf.train.scoring import render_dialogue

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("default", home=Path(HOME)))
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        parsed = [split_hh(r["chosen"], r["rejected"]) for r in map(json.loads, fh)]
    chosen_sets = []
    for (prompt, chosen, rejected), (_, other_chosen, other_rejected) in itertools.pairwise(parsed):
        texts = (chosen, rejected, other_chosen, other_rejected)
        if all(
            len(tokenizer(render_dialogue(tokenizer, prompt, t))["input_ids"]) <= max_length for t in texts
        ):
            chosen_sets.append((prompt, texts))
        if len(chosen_sets) == sets:
            break
    print(f"{len(chosen_sets)} four-way sets fit in {max_length} tokens")
    with Session(make_engine(url)) as session:
        user_id = id_of(add_user(session=session, name="bench", password="bench-password"))
        for prompt, texts in chosen_sets:
            p = get_or_add_prompt(session=session, messages=prompt)
            add_completion_set(
                session=session,
                prompt_id=id_of(p),
                completions=[CompletionIn(t) for t in texts],
                policy_version_id=None,
            )
        while (leased := lease_next_set(session=session, user_id=user_id)) is not None:
            by_position = {c.position: id_of(c) for c in leased.completions}
            ranks = {by_position[k]: k + 1 for k in range(4)}
            submit_ranking(
                session=session,
                ranking=RankingIn(
                    set_id=id_of(leased.set), user_id=user_id, submission_id=uuid.uuid4().hex, ranks=ranks
                ),
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=192)
    parser.add_argument("--max-length", type=int, default=192)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        build_store(url, args.sets, args.max_length)
        runs: list[tuple[Literal["ranking", "trl"], int]] = [("ranking", 2), ("trl", 12)]
        for trainer, batch in runs:  # 2 sets = 12 pairs per step, the same as 12 pairs
            config = RewardConfig(
                model="default",
                home=HOME,
                db=url,
                trainer=trainer,
                epochs=1,
                batch_sets=batch,
                max_length=args.max_length,
                eval_fraction=0.25,
                learning_rate=1e-4,
            )
            result = run(config)
            results[trainer] = (
                result.metrics["train_seconds"],
                result.metrics["accuracy"],
                result.metrics["pairs"],
            )
            seconds, accuracy, pairs = results[trainer]
            print(
                f"{trainer}: trained one epoch in {seconds:.0f}s, held-out accuracy {accuracy:.3f} on {pairs} pairs"
            )
    (rank_s, rank_acc, pairs), (trl_s, trl_acc, _) = results["ranking"], results["trl"]
    record_result(
        f"RESULT ranking_s={rank_s:.1f} trl_s={trl_s:.1f} speedup={trl_s / rank_s:.2f} ranking_accuracy={rank_acc:.3f} "
        f"trl_accuracy={trl_acc:.3f} accuracy_gap={abs(rank_acc - trl_acc):.3f} heldout_pairs={pairs}"
    )


if __name__ == "__main__":
    main()
