"""The policy step against trl: our PPO (GAE, a value head), our group advantages (RLOO-style, no value head) and
trl's GRPOTrainer, each given the same reward, prompts, answer count, learning rate and LoRA on the embedded
default, each from v0. The reward is the app's rule judge (its one check: `instructions`, the prompt's verifiable
instructions met): the reward `rankloop ppo --reward_source rules --rules_judge NAME` optimises. Each arm runs in a
process of its own (its peak memory is its own); then every trained adapter answers the held-out prompts (48 x 4
samples at temperature 0.7, as bench/loop.py reads them) and is scored by the hidden preference.

    .venv/bin/python bench/policy_step.py [--answers 256] [--arms ppo-gae,ppo-group,trl-grpo] [--seed 0]

One RESULT line per arm: seconds per 100 answers (the whole arm: load, train, save), peak memory, held-out pass
rate and its gain over v0, win-rate over v0 and held-out KL. The arms share our settings where both have one (lr
2e-4, LoRA r 16 / alpha 32 on every projection, 48 new tokens, temperature 1, 4 answers a prompt, 8 prompts a
rollout, minibatches of 4, 2 passes over each rollout, KL coefficient 0.05); everything else is each trainer's own
default (trl: its DAPO loss, group-scaled rewards and fixed KL coefficient; ours: an adaptive KL coefficient).

This isolates the policy step by design: no app, no labels, no reward model. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loop import HOME, MAX_NEW_TOKENS, answers_of, heldout_kl, judged, seed_store, win_rate
from results import record_result
from simulate import PREFERENCES, SimulatedLabeler
from sqlmodel import Session, col, select

from labeler.io.instruction_prompts import stored_instructions
from labeler.labels.judges import add_judge
from labeler.labels.rules import parse_rules, rules_scores
from labeler.records.policies import PolicyRef
from labeler.store.db import make_engine
from labeler.store.tables import Prompt
from models.adapters import LORA_TARGETS
from models.embedded import home_sharing_cache
from models.loading import load_base
from models.policy import PolicyPool

ARMS = ("ppo-gae", "ppo-group", "trl-grpo")
PROMPTS_PER_STEP, GROUP, MINIBATCH, EPOCHS = 8, 4, 4, 2
LR, KL_COEF, NEW_TOKENS, LORA_R, LORA_ALPHA = 2e-4, 0.05, 48, 16, 32
JUDGE = "rules"


def train_ours(home: str, url: str, arm: str, answers: int, seed: int) -> str:
    """`rankloop ppo --reward_source rules` at the shared settings; the new version's adapter folder."""
    from rlhf.train import ppo
    from rlhf.train.configs import PPOConfig

    group = arm == "ppo-group"
    per_step = PROMPTS_PER_STEP * (GROUP if group else 1)
    config = PPOConfig(
        home=home,
        db=url,
        reward_source="rules",
        rules_judge=JUDGE,
        steps=max(1, answers // per_step),
        batch_prompts=PROMPTS_PER_STEP,
        minibatch=MINIBATCH,
        ppo_epochs=EPOCHS,
        learning_rate=LR,
        max_new_tokens=NEW_TOKENS,
        kl_coef=KL_COEF,
        advantage="group" if group else "gae",
        group_size=GROUP,
        lora_r=LORA_R,
        lora_alpha=LORA_ALPHA,
        make_current=False,
        parent_version=0,
        sample_prompts=1,
        seed=seed,
        device="cpu",
    )
    return str(ppo.run(config).path)


def train_trl(home: str, url: str, answers: int, seed: int) -> str:
    """trl's GRPOTrainer on the same prompts and reward; the adapter folder it saved."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    engine = make_engine(url)
    with Session(engine) as s:
        rows = s.exec(select(Prompt).where(Prompt.split == "train").order_by(col(Prompt.id))).all()
        # instructions as JSON text: their parameters differ by kind, which one Arrow schema cannot hold
        data = Dataset.from_list(
            [{"prompt": list(p.messages), "instructions": json.dumps(p.instructions or [])} for p in rows]
        )
    rules = parse_rules("instructions")

    def checks_met(completions: list, instructions: list[str], **_: object) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else str(c) for c in completions]
        asked = [stored_instructions(json.loads(i)) for i in instructions]
        return [float(rules_scores([t], rules, a)[0]) for t, a in zip(texts, asked, strict=True)]

    model, tokenizer = load_base("default", home=Path(home), device="cpu")
    out = Path(home) / "trl-grpo"
    args = GRPOConfig(
        output_dir=str(out),
        max_steps=max(1, answers // (PROMPTS_PER_STEP * GROUP))
        * EPOCHS
        * (PROMPTS_PER_STEP * GROUP // MINIBATCH),
        per_device_train_batch_size=MINIBATCH,
        steps_per_generation=PROMPTS_PER_STEP * GROUP // MINIBATCH,  # one generation of 32 answers ...
        num_iterations=EPOCHS,  # ... read twice, in minibatches of 4: the same optimiser steps as ours
        num_generations=GROUP,
        max_completion_length=NEW_TOKENS,
        temperature=1.0,
        learning_rate=LR,
        beta=KL_COEF,
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        logging_steps=8,
        report_to="none",
        seed=seed,
    )
    peft = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=LORA_TARGETS)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=checks_met,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=peft,
    )
    trainer.train()
    trainer.save_model(str(out))
    return str(out)


def child(args: argparse.Namespace) -> None:
    """One arm, in this process: train, then report seconds, answers and this process's peak memory."""
    start = time.perf_counter()
    if args.child == "trl-grpo":
        adapter = train_trl(args.home, args.url, args.answers, args.seed)
    else:
        adapter = train_ours(args.home, args.url, args.child, args.answers, args.seed)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    Path(args.out).write_text(
        json.dumps(
            {"adapter": adapter, "seconds": time.perf_counter() - start, "peak_gib": peak_kib / 2**20}
        ),
        encoding="utf-8",
    )


def run_arm(arm: str, home: str, url: str, answers: int, seed: int) -> dict:
    out = Path(home) / f"{arm}.json"
    command = [sys.executable, __file__, "--child", arm, "--home", home, "--url", url, "--out", str(out)]
    command += ["--answers", str(answers), "--seed", str(seed)]
    subprocess.run(command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    return json.loads(out.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", type=int, default=256, help="answers each arm trains on")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout-prompts", type=int, default=48)
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--home", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    hidden = SimulatedLabeler("judge", preference=PREFERENCES["instructions"])
    with tempfile.TemporaryDirectory() as tmp:
        home = str(home_sharing_cache(Path(tmp) / "home", Path(HOME)))
        url = f"sqlite:///{Path(home) / 'policy_step.db'}"
        engine = make_engine(url)
        evals = seed_store(engine, "instructions", 160, args.heldout_prompts)
        with Session(engine) as s:
            add_judge(session=s, name=JUDGE, kind="rules", config={"rules": "instructions"})
        pool = PolicyPool(*load_base("default", home=Path(home)))
        v0 = PolicyRef(0, 0, "default", None, None)
        v0_eval = judged(answers_of(pool, v0, evals, args.eval_samples, MAX_NEW_TOKENS), evals, hidden)
        print(json.dumps({"v0_pass_rate": round(v0_eval["pass_rate"], 3)}), flush=True)
        for number, arm in enumerate(args.arms.split(","), start=1):
            trained = run_arm(arm, home, url, args.answers, args.seed)
            policy = PolicyRef(1000 + number, 1000 + number, "default", trained["adapter"], None)
            answers = answers_of(pool, policy, evals, args.eval_samples, MAX_NEW_TOKENS)
            scored = judged(answers, evals, hidden)
            rate, _ = win_rate(scored, v0_eval)
            record_result(
                f"RESULT arm={arm} answers={args.answers} seconds_per_100={100 * trained['seconds'] / args.answers:.1f} "
                f"peak_gib={trained['peak_gib']:.2f} pass_rate_v0={v0_eval['pass_rate']:.3f} "
                f"pass_rate={scored['pass_rate']:.3f} pass_gain={scored['pass_rate'] - v0_eval['pass_rate']:.3f} "
                f"win_rate={rate:.3f} kl_heldout={heldout_kl(pool, answers, evals):.3f} "
                f"words={scored['mean_words']:.1f} seed={args.seed}"
            )


if __name__ == "__main__":
    main()
