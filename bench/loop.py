"""The loop end to end on the embedded default (CPU): two rounds with simulated labelers (4 completions per set,
64 sets per round, 2 labelers per set), the reward model and PPO at their default settings. Per round it reports
the simulated labelers' win-rate of the new policy over the initial one on held-out eval prompts (judged by the
labelers' hidden preference), the reward model's held-out accuracy, KL to the initial model and wall time per
stage. Target: win-rate of v2 over v0 >= 0.70; the whole run under 60 minutes.

    .venv/bin/python bench/loop.py [--sets 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from sqlmodel import Session, select

from labeler.db import make_engine
from labeler.importers import import_prompts
from labeler.policies import current_policy, ensure_initial_policy
from labeler.settings import set_labels_needed
from labeler.simulate import SimulatedLabeler, concise_and_finished, label_waiting_sets
from labeler.tables import PolicyVersion, Prompt, RewardModel
from labeler.winrate import wilson_interval
from models.embedded import home_sharing_cache
from models.generation import SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from rlhf import round as round_stage
from rlhf.pregen import PregenConfig, PregenWorker

HOME = os.environ.get("RANKLOOP_HOME", "runs")
PROMPTS = Path(__file__).resolve().parents[1] / "data" / "prompts.jsonl"
LABELERS = [SimulatedLabeler("a", noise=0.2, seed=1), SimulatedLabeler("b", noise=0.4, seed=2)]


def win_rate(
    pool: PolicyPool,
    new: PolicyVersion,
    old: PolicyVersion,
    prompts: list[list[dict]],
    sampling: SamplingParams,
    samples: int,
) -> tuple[float, tuple[float, float], float, float]:
    """Share of (eval prompt, sample) pairs where the hidden preference scores the new version's answer above the
    old one's (ties count half), its 95% Wilson interval, and each version's share of answers that end."""

    def answers(v: PolicyVersion) -> list:
        out = pool.generate_as(
            version=v.version, adapter_path=v.adapter_path, prompts=prompts, n=samples, sampling=sampling
        )
        return [c for s in out for c in s]

    a, b = answers(new), answers(old)
    wins = 0.0
    for x, y in zip(a, b, strict=True):
        sx, sy = concise_and_finished(x.text, x.finish_reason), concise_and_finished(y.text, y.finish_reason)
        wins += 1.0 if sx > sy else 0.5 if sx == sy else 0.0

    def ended(answers: list) -> float:
        return sum(c.finish_reason == "eos" for c in answers) / len(answers)

    return wins / len(a), wilson_interval(wins, len(a)), ended(a), ended(b)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--eval-samples", type=int, default=4, help="sampled answers per eval prompt and version"
    )
    args = parser.parse_args()
    start_all = time.perf_counter()
    report = []
    with tempfile.TemporaryDirectory() as tmp:
        home = str(home_sharing_cache(Path(tmp) / "home", Path(HOME)))
        url = f"sqlite:///{Path(home) / 'loop.db'}"
        engine = make_engine(url)
        with Session(engine) as s:
            import_prompts(session=s, path=PROMPTS, eval_fraction=0.25)
            ensure_initial_policy(session=s, base_model="default")
            set_labels_needed(session=s, k=2)
            evals = [p.messages for p in s.exec(select(Prompt).where(Prompt.split == "eval"))]
        base, tokenizer = load_base("default", home=Path(home))
        pool = PolicyPool(base, tokenizer)
        sampling = SamplingParams(max_new_tokens=64, temperature=0.8, seed=0)
        worker = PregenWorker(
            engine=engine,
            pool=pool,
            config=PregenConfig(buffer=args.sets, n=4, batch_prompts=8, sampling=sampling),
        )
        eval_sampling = SamplingParams(max_new_tokens=64, temperature=0.7, seed=1)
        with Session(engine) as s:
            v0 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 0)).one()
            s.expunge(v0)
        for number in range(1, args.rounds + 1):
            t = time.perf_counter()
            while worker.step():
                pass
            generate_s = time.perf_counter() - t
            t = time.perf_counter()
            label_waiting_sets(engine, LABELERS)
            label_s = time.perf_counter() - t
            result = round_stage.run(round_stage.RoundConfig(home=home, db=url))
            with Session(engine) as s:
                new = current_policy(session=s)
                assert new is not None, "the round made no current version"
                rm = s.exec(select(RewardModel).where(RewardModel.name == result.reward_model)).one()
            t = time.perf_counter()
            rate, (low, high), ended, ended_v0 = win_rate(
                pool, new, v0, evals, eval_sampling, args.eval_samples
            )
            row = {
                "round": number,
                "win_rate_vs_v0": round(rate, 3),
                "win_rate_ci95": [round(low, 3), round(high, 3)],
                "comparisons": len(evals) * args.eval_samples,
                "answers_ending": round(ended, 3),
                "answers_ending_v0": round(ended_v0, 3),
                "reward_accuracy": rm.metrics.get("accuracy"),
                "kl_to_initial": result.metrics.get("kl"),
                "generate_s": round(generate_s),
                "label_s": round(label_s),
                **{f"{k}_s": round(v) for k, v in result.stage_seconds.items()},
                "eval_s": round(time.perf_counter() - t),
            }
            report.append(row)
            print(json.dumps(row))
    total = time.perf_counter() - start_all
    last = report[-1]
    print(
        f"RESULT rounds={len(report)} win_rate_last_vs_v0={last['win_rate_vs_v0']:.3f} "
        f"win_rate_ci95={last['win_rate_ci95'][0]:.2f}-{last['win_rate_ci95'][1]:.2f} "
        f"reward_accuracy_last={last['reward_accuracy']:.3f} kl_last={last['kl_to_initial']:.3f} "
        f"answers_ending_last={last['answers_ending']:.2f} total_min={total / 60:.1f}"
    )


if __name__ == "__main__":
    main()
