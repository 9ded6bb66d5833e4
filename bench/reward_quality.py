"""Reward-model quality on real human preferences: train on the first 1,300 pairs of the shared Anthropic HH
harmless file and report pairwise accuracy on the last 200, with the embedded default base (CPU).
Target: accuracy >= 0.60.

    .venv/bin/python bench/reward_quality.py [--max-length 256] [--epochs 1]
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from pathlib import Path

from results import record_result  # bench/results.py: the line, kept in bench/results/
from sqlmodel import Session

from labeler.io.importers import import_pairs
from labeler.store.db import make_engine
from rlhf.train.configs import RewardConfig
from rlhf.train.reward import run

HH = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-test-part-a.jsonl.gz"


def split_file(tmp: Path, train: int) -> tuple[Path, Path]:
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    head, tail = tmp / "train.jsonl", tmp / "test.jsonl"
    head.write_text("\n".join(lines[:train]) + "\n")
    tail.write_text("\n".join(lines[train:]) + "\n")
    return head, tail


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=1300)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-sets", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--home", default=os.environ.get("RANKLOOP_HOME", "runs"))
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        train_file, test_file = split_file(tmp, args.train)
        url = f"sqlite:///{tmp / 'bench.db'}"
        with Session(make_engine(url)) as session:
            import_pairs(session=session, path=train_file)
            import_pairs(session=session, path=test_file)
        config = RewardConfig(
            model="default",
            home=args.home,
            db=url,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_sets=args.batch_sets,
            max_length=args.max_length,
            lora_r=args.lora_r,
            lora_alpha=2 * args.lora_r,
            heldout_sources=[test_file.name],
            device="auto",
        )
        result = run(config)
    wall = time.perf_counter() - start
    acc = result.metrics["accuracy"]
    print(f"held-out accuracy {acc:.4f} on {result.metrics['pairs']} pairs; wall {wall:.0f}s")
    record_result(
        f"RESULT accuracy={acc:.4f} heldout_pairs={result.metrics['pairs']} train_pairs={result.train_sets} wall_s={wall:.0f}"
    )


if __name__ == "__main__":
    main()
