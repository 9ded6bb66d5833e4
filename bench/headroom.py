"""How much a KL budget leaves to learn on the loop's task, and how much of the labels can teach it: v0's answers to
the held-out instruction prompts (bench/loop.py's task), read with the hidden preference the simulated labelers
rank by (bench/simulate.py).

    .venv/bin/python bench/headroom.py [--prompts 48] [--samples 8] [--max-new-tokens 72] [--temperature 0.8]

Two figures, both on v0's samples at the generator's settings:
- **which pairs carry a preference**: of the pairs among each prompt's first 4 answers (a labeled set), the share
  the hidden preference scores equal (the labelers' order is then their noise alone), less than 1 apart (their
  noise of 0.2-0.4 flips some), apart by the instructions met, or apart by the ending alone; and the same for the
  consensus pairs bench/loop.py's two labelers leave (what DPO trains on), with the share ordered wrongly;
- **best of n**: the strict pass rate of the answer the hidden preference ranks first among n samples, n = 1, 2,
  4, 8, next to log n - (n - 1) / n, an upper bound on the best-of-n policy's KL from v0 (Beirami et al. 2024). A
  labeled set's first choice is such an answer for n = 4, so this is what learning the labelers' first choices
  exactly would reach, and at what KL at most: the headroom a round's KL budget (4 nats) leaves.

It isolates v0's samples by design (no app, no training); bench/loop.py measures what the rounds reach.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from loop import HOME, loop_labelers
from results import record_result
from simulate import PREFERENCES

from labeler.io.instruction_prompts import InstructionPrompt, generate_prompts
from labeler.labels.consensus import pair_votes
from labeler.labels.instructions import constraints_met, strict_pass
from labeler.labels.pairs import RankingView
from models.generation import Completion, SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from rlhf.train.configs import ANSWER_TOKENS

SET_SIZE = 4  # answers in a labeled set (`rankloop serve --n`)
CLOSE = 1.0  # scores closer than this: the labelers' noise (sd 0.2 and 0.4) flips the order now and then


def pair_kind(a: tuple[float, int], b: tuple[float, int]) -> str:
    """What decides a pair of (hidden score, instructions met): nothing (equal scores: the labelers' noise
    alone orders it), little (`CLOSE`), the instructions met, or the ending alone."""
    gap = abs(a[0] - b[0])
    if gap == 0:
        return "equal"
    if gap < CLOSE:
        return "close"
    return "instructions" if a[1] != b[1] else "ending"


KINDS = ("equal", "close", "ending", "instructions")


def read_set(prompt: InstructionPrompt, group: list) -> list[tuple[float, int]]:
    """(hidden score, instructions met) of each of the first `SET_SIZE` answers."""
    score = PREFERENCES["instructions"]
    return [
        (score(c.text, c.finish_reason, prompt.instructions), constraints_met(c.text, prompt.instructions))
        for c in group[:SET_SIZE]
    ]


def shares(kinds: list[str], prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{kind}": kinds.count(kind) / len(kinds) for kind in KINDS}


def pair_kinds(prompts: list[InstructionPrompt], answers: list[list[Completion]]) -> dict[str, float]:
    """Share of the pairs among each prompt's first `SET_SIZE` answers by what decides them (`pair_kind`)."""
    kinds = []
    for prompt, group in zip(prompts, answers, strict=True):
        kinds += [pair_kind(a, b) for a, b in itertools.combinations(read_set(prompt, group), 2)]
    return shares(kinds)


@dataclass(frozen=True)
class Answer:
    """A sample as the simulated labelers read a stored answer."""

    id: int
    text: str
    finish_reason: str


def trained_pairs(prompts: list[InstructionPrompt], answers: list[list[Completion]]) -> dict[str, float]:
    """The consensus pairs that bench/loop.py's two labelers (seed 0) leave on each prompt's first `SET_SIZE`
    answers, which DPO and the reward model train on: pairs per set, the share by what decides them
    (`pair_kind`), the share the hidden preference orders the other way, and the same for the pairs whose
    consensus rank gap is 2 or more."""
    labelers = loop_labelers(0, PREFERENCES["instructions"])
    rngs = [random.Random(lab.seed) for lab in labelers]
    kinds, wrong, wide = [], [], []
    for prompt, group in zip(prompts, answers, strict=True):
        items = [Answer(i, c.text, c.finish_reason) for i, c in enumerate(group[:SET_SIZE])]
        read = read_set(prompt, items)
        views = [
            RankingView(lab.rank(items, rng, prompt.instructions))
            for lab, rng in zip(labelers, rngs, strict=True)
        ]
        for pair in pair_votes(views):
            kind = pair_kind(read[pair.chosen], read[pair.rejected])
            kinds.append(kind)
            wrong.append(read[pair.chosen][0] < read[pair.rejected][0])
            if pair.margin >= 2:
                wide.append(kind)
    return {
        "per_set": len(kinds) / len(prompts),
        **shares(kinds, "trained_"),
        "trained_wrong": sum(wrong) / len(wrong),
        "gap2_per_set": len(wide) / len(prompts),
        "gap2_equal": wide.count("equal") / max(len(wide), 1),
    }


def best_of(prompts: list[InstructionPrompt], answers: list[list[Completion]], n: int) -> float:
    """Strict pass rate of the hidden preference's first choice among n samples (the samples cut into groups)."""
    score = PREFERENCES["instructions"]
    passed = []
    for prompt, group in zip(prompts, answers, strict=True):
        for start in range(0, len(group) - n + 1, n):
            best = max(
                group[start : start + n], key=lambda c: score(c.text, c.finish_reason, prompt.instructions)
            )
            passed.append(strict_pass(best.text, prompt.instructions))
    return statistics.fmean(passed)


def kl_bound(n: int) -> float:
    """log n - (n - 1) / n: an upper bound on the KL of the best-of-n policy from the one it samples."""
    return math.log(n) - (n - 1) / n


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=48, help="held-out prompts (bench/loop.py's 48)")
    parser.add_argument(
        "--samples", type=int, default=8, help="answers per prompt (a power of 2, at least 4)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=ANSWER_TOKENS)
    parser.add_argument("--temperature", type=float, default=0.8, help="the generator's default")
    args = parser.parse_args(argv)
    if args.samples < SET_SIZE or args.samples & (args.samples - 1):
        parser.error("--samples must be a power of 2, at least 4")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    prompts = generate_prompts(count=args.prompts, split="heldout", seed=0)
    base, tokenizer = load_base("default", home=Path(HOME))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=1)
    answers = PolicyPool(base, tokenizer).generate([p.messages for p in prompts], args.samples, sampling)
    kinds = pair_kinds(prompts, answers)
    print("pairs of a labeled set, by how far apart the hidden preference scores them:")
    for kind, share in kinds.items():
        print(f"  {kind:13s} {share:.2f}")
    trained = trained_pairs(prompts, answers)
    print(
        f"consensus pairs of two labelers: {trained['per_set']:.2f} a set, of which equal {trained['trained_equal']:.2f},"
        f" ordered against the hidden preference {trained['trained_wrong']:.2f}; with a rank gap of 2 or more:"
        f" {trained['gap2_per_set']:.2f} a set, equal {trained['gap2_equal']:.2f}"
    )
    sizes = [2**i for i in range(int(math.log2(args.samples)) + 1)]
    rates = {n: best_of(prompts, answers, n) for n in sizes}
    for n, rate in rates.items():
        print(f"best of {n}: strict pass {rate:.3f}, KL from v0 at most {kl_bound(n):.2f}")
    record_result(
        f"RESULT prompts={args.prompts} samples={args.samples} "
        + " ".join(f"pairs_{kind}={share:.2f}" for kind, share in kinds.items())
        + " "
        + " ".join(f"{key}={value:.2f}" for key, value in trained.items())
        + " "
        + " ".join(f"best_of_{n}={rate:.3f}" for n, rate in rates.items())
        + f" minutes={(time.perf_counter() - start) / 60:.1f}"
    )


if __name__ == "__main__":
    main()
