"""Generation benchmark: the batched transformers backend against generating each completion alone, in one run,
with the embedded default model (8 prompts x N=4, 64 new tokens). Target: batched >= 4x sequential tokens/s.
With CUDA and vllm present, the vLLM backend is measured too.

    .venv/bin/python bench/generation.py [--prompts 8] [--n 4] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from results import record_result  # bench/results.py: the line, kept in bench/results/
from tqdm import tqdm

from models.generation import SamplingParams, TransformersBackend
from models.loading import load_base

PROMPTS = Path(__file__).resolve().parents[1] / "data" / "prompts.jsonl"


def timed(fn) -> tuple[float, list]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def tokens(sets) -> int:
    return sum(c.token_count for s in sets for c in s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default="default")
    parser.add_argument("--home", default=os.environ.get("RANKLOOP_HOME", "runs"))
    args = parser.parse_args()
    lines = PROMPTS.read_text().splitlines()[: args.prompts]
    prompts = [[{"role": "user", "content": json.loads(line)["prompt"]}] for line in lines]
    model, tokenizer = load_base(args.model, home=Path(args.home))
    backend = TransformersBackend(model, tokenizer)
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.8, seed=0)
    backend.generate(prompts[:1], 1, SamplingParams(max_new_tokens=4))  # warm-up

    batched_s, batched = timed(lambda: backend.generate(prompts, args.n, sampling))
    print(
        f"batched: {tokens(batched)} tokens in {batched_s:.1f}s = {tokens(batched) / batched_s:.1f} tokens/s"
    )

    def one_by_one():
        return [
            [backend._generate_all([p], 1, sampling)[0][0] for _ in range(args.n)]
            for p in tqdm(prompts, desc="sequential")
        ]

    seq_s, seq = timed(one_by_one)
    print(f"sequential: {tokens(seq)} tokens in {seq_s:.1f}s = {tokens(seq) / seq_s:.1f} tokens/s")
    ratio = (tokens(batched) / batched_s) / (tokens(seq) / seq_s)
    record_result(
        f"RESULT batched_tokens_per_s={tokens(batched) / batched_s:.1f} sequential_tokens_per_s={tokens(seq) / seq_s:.1f} ratio={ratio:.2f}"
    )


if __name__ == "__main__":
    main()
