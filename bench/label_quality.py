"""Do labeler weights rescue a reward model from bad labelers? One component by design (the reward stage and the
reliability model), on the tiny in-process model and a synthetic, learnable preference (an answer is better the
more often it says "good"), so that many sets and repeats fit in minutes on a CPU; the label aggregation it
measures does not depend on the model's size.

Each set has 4 answers and 4 simulated labelers who rank it through lease + submit: two honest ones (Gaussian
noise 0.7 and 1.0 on the hidden score), an adversary (ranks by the reversed score) and a random one. Three reward
models train on the same sets, same seed:

    equal        all four labelers, every vote counts once (the default)
    reliability  all four, votes and pairs weighted by the reliability model (labeler_weights=reliability)
    honest       the two honest labelers only (a second store with the same sets and their rankings)

Reported per arm and repeat: accuracy on the held-out sets' pairs against the hidden preference (the same pairs
for every arm), and the reliability model's ranking of the labelers. Targets: the adversary and the random
labeler ranked last; reliability accuracy >= honest accuracy - 0.02.

    .venv/bin/python bench/label_quality.py [--sets 160] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Literal

import torch
from peft import PeftModel
from results import record_result  # bench/results.py: the line, kept in bench/results/
from simulate import SimulatedLabeler, ensure_accounts, label_waiting_sets
from sqlmodel import Session

from labeler.labels.dataset import load_set_rankings
from labeler.labels.reliability import fit_reliability, votes_from_sets
from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.settings import set_labels_needed
from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt, messages_hash
from labeler.store.tables import id_of
from models.loading import load_base
from models.tiny import save_tiny_checkpoint
from rlhf.train import reward
from rlhf.train.configs import RewardConfig
from rlhf.train.reward_data import is_heldout
from rlhf.train.reward_eval import score_sets
from rlhf.train.scoring import RewardScorer, load_head

WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "sea", "sky", "poem", "answer"]
EVAL_FRACTION = 0.25
Weights = Literal["equal", "reliability"]


def goodness(text: str, finish_reason: str = "eos", instructions=()) -> float:
    return float(text.count(" good"))


def reversed_goodness(text: str, finish_reason: str = "eos", instructions=()) -> float:
    return -goodness(text)


def labelers(seed: int) -> list[SimulatedLabeler]:
    return [
        SimulatedLabeler("honest-a", noise=0.7, seed=seed + 1, preference=goodness),
        SimulatedLabeler("honest-b", noise=1.0, seed=seed + 2, preference=goodness),
        SimulatedLabeler("adversary", noise=0.7, seed=seed + 3, preference=reversed_goodness),
        SimulatedLabeler("random", noise=1e6, seed=seed + 4, preference=goodness),
    ]


def build_store(url: str, checkpoint: str, sets: int, seed: int) -> list[tuple[list[dict], list[str]]]:
    """Unranked sets of 4 answers (0-3 "good"s in random order); returns the held-out ones (prompt, answers)."""
    rng = random.Random(seed)
    heldout = []
    with Session(make_engine(url)) as s:
        pv = ensure_initial_policy(session=s, base_model=checkpoint)
        set_labels_needed(session=s, k=4)
        for i in range(sets):
            messages = [{"role": "user", "content": f"question {i} {rng.choice(WORDS)}"}]
            prompt = get_or_add_prompt(session=s, messages=messages)
            goods = [0, 1, 2, 3]
            rng.shuffle(goods)
            texts = [
                " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + " good" * g + "."
                for g in goods
            ]
            add_completion_set(session=s, prompt_id=id_of(prompt), completions=[CompletionIn(t) for t in texts], policy_version_id=pv.id, labels_needed=4)  # fmt: skip
            if is_heldout(messages_hash(messages), EVAL_FRACTION):
                heldout.append((messages, texts))
    return heldout


def accuracy_vs_hidden(folder: Path, checkpoint: str, home: Path, heldout) -> float:
    """Share of held-out pairs with different hidden scores that the model orders like the hidden preference."""
    base, tokenizer = load_base(checkpoint, home=home, device="cpu")
    model = PeftModel.from_pretrained(base, str(folder), adapter_name="reward")
    scorer = RewardScorer(model, load_head(folder, base.config.hidden_size)).eval()
    scores = score_sets(scorer, tokenizer, heldout, max_length=64)
    right = total = 0
    for (_, texts), s in zip(heldout, scores, strict=True):
        for a, b in combinations(range(len(texts)), 2):
            ga, gb = goodness(texts[a]), goodness(texts[b])
            if ga != gb:
                total += 1
                right += (s[a] > s[b]) == (ga > gb)
    return right / total


def one_repeat(tmp: Path, sets: int, seed: int) -> dict:
    checkpoint = str(save_tiny_checkpoint(tmp / "tiny"))
    url_all, url_honest = f"sqlite:///{tmp / 'all.db'}", f"sqlite:///{tmp / 'honest.db'}"
    heldout = build_store(url_all, checkpoint, sets, seed)
    shutil.copy(tmp / "all.db", tmp / "honest.db")  # the same sets, unranked
    people = labelers(seed)
    label_waiting_sets(make_engine(url_all), people)
    label_waiting_sets(make_engine(url_honest), people[:2])
    ids = ensure_accounts(make_engine(url_all), people)
    names: dict[str | int, str] = {v: k for k, v in ids.items()}
    with Session(make_engine(url_all)) as s:
        ranked = load_set_rankings(session=s)
    fit = fit_reliability(votes_from_sets((x.set_id, x.rankings) for x in ranked))
    out: dict = {"seed": seed, "labelers": {names[k]: round(v, 3) for k, v in fit.ranked()}}
    arms: dict[str, tuple[str, Weights]] = {
        "equal": (url_all, "equal"),
        "reliability": (url_all, "reliability"),
        "honest": (url_honest, "equal"),
    }
    for arm, (url, weights) in arms.items():
        torch.manual_seed(seed)
        home = tmp / arm
        config = RewardConfig(model=checkpoint, home=str(home), db=url, epochs=2, learning_rate=3e-3, eval_fraction=EVAL_FRACTION, max_length=64, device="cpu", labeler_weights=weights, seed=seed)  # fmt: skip
        result = reward.run(config)
        out[arm] = round(accuracy_vs_hidden(result.path, checkpoint, home, heldout), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            row = one_repeat(Path(tmp), args.sets, seed=repeat)
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {arm: statistics.fmean(r[arm] for r in rows) for arm in ("equal", "reliability", "honest")}
    last_two = all(set(list(r["labelers"])[-2:]) == {"adversary", "random"} for r in rows)
    record_result(
        f"RESULT sets={args.sets} repeats={args.repeats} accuracy_equal={mean['equal']:.4f} "
        f"accuracy_reliability={mean['reliability']:.4f} accuracy_honest={mean['honest']:.4f} "
        f"reliability_minus_honest={mean['reliability'] - mean['honest']:.4f} "
        f"adversary_and_random_last={str(last_two).lower()} minutes={(time.perf_counter() - start) / 60:.1f}"
    )


if __name__ == "__main__":
    main()
