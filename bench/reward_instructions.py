"""Reward-model quality on bench/loop.py's instruction task, one component by design: v0 (the embedded default)
writes sets of 4 answers for training prompts, the loop's two simulated labelers rank them, and each reward
setting ("arm") trains a fresh model on the same rankings. Every arm is scored against the noise-free hidden
preference on answers to held-out prompts (topics and parameter values training never saw):

- `acc`: pairs whose hidden scores differ;
- `acc_rules`: pairs that differ in the number of instructions met (what the reward model must read the prompt
  for; the rest of the hidden score is whether the answer ends).

    .venv/bin/python bench/reward_instructions.py [--sets 96] [--arms loop,lr3e-4,lr1e-3,lr3e-4x2] [--keep DIR]

It also reports how often v0's answers are alike to the hidden preference (`v0_alike_sets`: sets whose 4 answers
it scores the same, `v0_tied_pairs`: answer pairs it scores the same), which bench/active_labeling.py's pool
matches; `--arms ""` measures that alone.

`--keep DIR` keeps the generated store and held-out answers, and a later run with the same DIR reuses them (only
the arms train again). Ends with `RESULT arm_NAME_acc=... arm_NAME_rules=... ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from dataclasses import replace
from itertools import combinations
from pathlib import Path

from results import record_result  # bench/results.py: the line, kept in bench/results/
from simulate import PREFERENCES, SimulatedLabeler, label_waiting_sets
from sqlmodel import Session, col, select

from labeler.io.instruction_prompts import add_instruction_prompts, generate_prompts, stored_instructions
from labeler.labels.instructions import constraints_met
from labeler.records.policies import current_policy, ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.settings import set_labels_needed
from labeler.store.tables import Prompt
from models.embedded import home_sharing_cache
from models.generation import SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from rlhf.serve.pregen import PregenConfig, PregenWorker
from rlhf.train.configs import ANSWER_TOKENS, RewardConfig
from rlhf.train.progress import ConsoleReporter
from rlhf.train.reward import build_scorer, read_data, train_loop
from rlhf.train.reward_eval import score_sets

HOME = os.environ.get("RANKLOOP_HOME", "runs")
MAX_NEW_TOKENS = ANSWER_TOKENS  # the generator's default cap, as bench/loop.py
ARMS: dict[str, dict] = {
    "loop": {},  # the reward stage's own defaults (1 epoch, lr 1e-4); a round now trains 2 epochs at lr 1e-3
    "lr3e-4": {"learning_rate": 3e-4},
    "lr1e-3": {"learning_rate": 1e-3},
    "lr3e-4x2": {"learning_rate": 3e-4, "epochs": 2},
    "lr1e-4x3": {"epochs": 3},
    "r64": {"learning_rate": 3e-4, "lora_r": 64, "lora_alpha": 128},
}


def prepare(folder: Path, sets: int, heldout: int) -> tuple[str, list[dict]]:
    """The store (v0's sets, ranked) and the held-out answers; made once per folder."""
    url = f"sqlite:///{folder / 'study.db'}"
    answers_file = folder / "heldout_answers.json"
    if answers_file.exists():
        return url, json.loads(answers_file.read_text())
    engine = make_engine(url)
    with Session(engine) as s:
        prompts = generate_prompts(count=max(160, sets * 2), split="train", seed=0)
        prompts += generate_prompts(count=heldout, split="heldout", seed=0)
        add_instruction_prompts(session=s, prompts=prompts, source="bench-instructions")
        ensure_initial_policy(session=s, base_model="default")
        set_labels_needed(session=s, k=2)
        evals = s.exec(select(Prompt).where(Prompt.split == "eval").order_by(col(Prompt.id))).all()
        evals_data = [(list(p.messages), p.instructions) for p in evals]
        v0 = current_policy(session=s)
        assert v0 is not None
        version, adapter = v0.version, v0.adapter_path
    base, tokenizer = load_base("default", home=folder)
    pool = PolicyPool(base, tokenizer)
    sampling = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.8, seed=0)
    t = time.perf_counter()
    worker = PregenWorker(
        engine=engine,
        pool=pool,
        config=PregenConfig(buffer=sets, n=4, batch_prompts=8, sampling=sampling, seed=0),
    )
    while worker.step():
        pass
    labelers = [
        SimulatedLabeler("a", noise=0.2, seed=1, preference=PREFERENCES["instructions"]),
        SimulatedLabeler("b", noise=0.4, seed=2, preference=PREFERENCES["instructions"]),
    ]
    label_waiting_sets(engine, labelers)
    print(f"generated and ranked {sets} sets in {time.perf_counter() - t:.0f} s", flush=True)
    out = pool.generate_as(
        version=version,
        adapter_path=adapter,
        prompts=[m for m, _ in evals_data],
        n=4,
        sampling=replace(sampling, seed=1),
    )
    answers = [
        {
            "messages": messages,
            "instructions": instructions,
            "texts": [c.text for c in completions],
            "finish": [c.finish_reason for c in completions],
        }
        for (messages, instructions), completions in zip(evals_data, out, strict=True)
    ]
    answers_file.write_text(json.dumps(answers))
    del pool, base
    return url, answers


def hidden_scores(item: dict) -> list[float]:
    """The noise-free hidden preference (the loop's labelers' `instructions`) of one held-out set's answers."""
    rules = stored_instructions(item["instructions"])
    judge = PREFERENCES["instructions"]
    return [judge(t, f, rules) for t, f in zip(item["texts"], item["finish"], strict=True)]


def accuracy(scores: list[list[float]], answers: list[dict]) -> dict[str, float]:
    """Pairwise accuracy against the hidden preference: all pairs it orders, and pairs differing in rules met."""
    hits, rule_hits = [], []
    for predicted, item in zip(scores, answers, strict=True):
        hidden, rules = hidden_scores(item), stored_instructions(item["instructions"])
        met = [constraints_met(t, rules) for t in item["texts"]]
        for i, j in combinations(range(len(hidden)), 2):
            if hidden[i] == hidden[j]:
                continue
            right = (predicted[i] > predicted[j]) == (hidden[i] > hidden[j])
            hits.append(right)
            if met[i] != met[j]:
                rule_hits.append(right)
    return {
        "acc": sum(hits) / max(1, len(hits)),
        "rules": sum(rule_hits) / max(1, len(rule_hits)),
        "pairs": len(hits),
        "rule_pairs": len(rule_hits),
    }


def ties(answers: list[dict]) -> dict[str, float]:
    """How often v0's answers are alike to the hidden preference: the share of sets whose answers it scores all
    the same, and of answer pairs it scores the same (bench/active_labeling.py's pool is shaped to match)."""
    alike, tied, pairs = 0, 0, 0
    for item in answers:
        hidden = hidden_scores(item)
        alike += len(set(hidden)) == 1
        for i, j in combinations(range(len(hidden)), 2):
            pairs += 1
            tied += hidden[i] == hidden[j]
    return {"alike_sets": alike / max(1, len(answers)), "tied_pairs": tied / max(1, pairs)}


def train_arm(url: str, home: str, overrides: dict, answers: list[dict]) -> dict:
    config = RewardConfig(home=home, db=url, eval_fraction=0.0, **overrides)
    data = read_data(make_engine(url), config)
    scorer, tokenizer = build_scorer(config)
    t = time.perf_counter()
    train_loop(scorer, tokenizer, data.train, config, ConsoleReporter())
    seconds = time.perf_counter() - t
    scores = score_sets(scorer, tokenizer, [(a["messages"], a["texts"]) for a in answers], config.max_length)
    return {**accuracy(scores, answers), "train_s": round(seconds), "groups": len(data.train)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=96, help="ranked sets of 4 to train on")
    parser.add_argument("--heldout-prompts", type=int, default=48)
    parser.add_argument(
        "--arms", default="loop,lr3e-4,lr1e-3,lr3e-4x2", help=f"from {sorted(ARMS)}; empty: ties only"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the store and held-out answers here")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        parser.error(f"unknown arms {unknown}; choose from {sorted(ARMS)}")
    kept = contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()
    with kept as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        home_path = Path(tmp) / "home"
        if not home_path.exists():
            home_sharing_cache(home_path, Path(HOME))
        home = str(home_path)
        url, answers = prepare(Path(home), args.sets, args.heldout_prompts)
        alike = ties(answers)
        print(json.dumps({"heldout_v0": alike}), flush=True)
        results = {}
        for arm in arms:
            results[arm] = train_arm(url, home, ARMS[arm], answers)
            print(json.dumps({"arm": arm, **results[arm]}), flush=True)
    record_result(
        f"RESULT v0_alike_sets={alike['alike_sets']:.3f} v0_tied_pairs={alike['tied_pairs']:.3f} "
        + " ".join(f"arm_{a}_acc={r['acc']:.3f} arm_{a}_rules={r['rules']:.3f}" for a, r in results.items())
    )


if __name__ == "__main__":
    main()
