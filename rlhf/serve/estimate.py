"""How long a job will take on this machine, before it starts (the admin tab shows it under each launch form).

Each stage's work is counted from its settings and the store: SFT's answer-tokens (at most one best answer per
ranked set, x epochs x max_length), the reward stage's set-tokens (sets trained on x epochs x max_length), PPO's token passes (steps x batch_prompts x answers per prompt x max_new_tokens x
(1 + ppo_epochs)), DPO's set-tokens (ranked sets x epochs x max_length), and, where PPO or DPO has a KL budget,
the budget's answer-tokens (measures x kl_budget_prompts x kl_budget_samples x max_new_tokens, counting
BUDGET_MEASURES measures before it runs and those it made after). The seconds per unit come from the newest
finished job on this machine that ran the stage (its recorded stage seconds over its own work; loading, evaluation
and samples included), or, before any has, from default rates measured on the embedded default model
(bench/loop.py on a 2-core CPU; a GPU guess divides them). Torch-free: the web process imports it.

    from rlhf.serve.estimate import estimate_job
    estimate_job("round", params, data=training_data(session=s), history=recent_jobs(session=s)).text()
    # 'About 21 min: reward model 9 min (rate of job 7), PPO 12 min (rate of job 7).'
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from labeler.labels.stats import TrainingData
from labeler.store.tables import Job
from rlhf.train.configs import ROUND_EXPOSES, PPOConfig, job_config

# seconds per unit of work on a 2-core CPU: bench/loop.py's first round (SFT: 51 s for 40 answers x 2 epochs x 384
# tokens; reward: 572 s for 58 sets x 1 epoch x 256 tokens; PPO: 762 s for 12 steps x 8 prompts x 72 tokens x 3
# passes; DPO's set trainer: 203 s for 64 sets x 1 epoch x 384 tokens, where trl's DPOTrainer took 932 s:
# TRL_DPO_PASSES times the work; KL budget: 107 s for 2 measures x 32 prompts x 2 answers x 72 tokens)
CPU_RATES = {"sft": 0.0017, "reward": 0.0385, "ppo": 0.0367, "dpo": 0.0083, "kl_budget": 0.0116}
TRL_DPO_PASSES = 4.5  # trl runs each answer once per pair it is in (a set of 4: up to 6 pairs, 12 sequences)
BUDGET_MEASURES = 3  # a budget fit's measures before it runs (1 when the version fits, 2-5 when it is scaled)
GPU_SPEEDUP = 25.0  # a rough guess for a single data-centre GPU until a job has run there
STAGES = ("sft", "reward", "ppo", "dpo", "kl_budget")
STAGE_NAMES = {"sft": "SFT", "reward": "reward model", "ppo": "PPO", "dpo": "DPO", "kl_budget": "KL budget"}


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    seconds: float
    basis: str  # where the rate came from: "rate of job 7" or "default CPU rate"


@dataclass(frozen=True)
class Estimate:
    stages: list[StageEstimate]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def text(self) -> str:
        parts = ", ".join(f"{STAGE_NAMES[s.stage]} {minutes(s.seconds)} ({s.basis})" for s in self.stages)
        return f"About {minutes(self.seconds)} on this machine: {parts}."


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def stage_settings(kind: str, params: dict[str, Any], stage: str) -> dict[str, Any]:
    """A job's settings for one of its stages (the stage's own defaults under what the job set); {} when the job
    does not run that stage."""
    config_cls = job_config(kind)
    names = {f.name for f in fields(config_cls)}
    config = config_cls(**{k: v for k, v in params.items() if k in names})
    if stage == "kl_budget":  # the optimiser's settings, where it has a budget
        optimiser = getattr(config, "optimizer", kind)
        settings = stage_settings(kind, params, optimiser) if optimiser in ("ppo", "dpo") else {}
        return settings if settings.get("kl_budget") is not None else {}
    if kind == stage:
        return asdict(config)
    if kind != "round" or not round_runs(config, stage):
        return {}
    defaults = asdict(ROUND_EXPOSES[stage][0]())
    return {**defaults, **config.stage_settings(stage)}


def round_runs(config: Any, stage: str) -> bool:
    """Whether a round with this config runs `stage`: SFT when it is on, the reward model and PPO or DPO by the
    optimiser."""
    if stage == "sft":
        return bool(config.sft)
    return (stage == "dpo") == (config.optimizer == "dpo")


def work(stage: str, settings: dict[str, Any], sets: int) -> float:
    """Units of work of one stage run over `sets` ranked sets."""
    if stage == "kl_budget":
        answers = BUDGET_MEASURES * settings["kl_budget_prompts"] * settings["kl_budget_samples"]
        return answers * settings["max_new_tokens"]
    if stage == "ppo":
        passes = 1 + settings["ppo_epochs"]
        answers = PPOConfig(**settings).answers_per_prompt
        return settings["steps"] * settings["batch_prompts"] * answers * settings["max_new_tokens"] * passes
    # an ensemble trains each of its models on the same sets, one after another
    passes = TRL_DPO_PASSES if stage == "dpo" and settings.get("trainer") == "trl" else 1
    return sets * settings["epochs"] * settings["max_length"] * settings.get("ensemble", 1) * passes


def stage_sets(stage: str, settings: dict[str, Any], data: TrainingData) -> int:
    """The ranked sets a stage would train on now (PPO's work does not depend on them): a continued reward model
    the new ones and its `replay` share of the others, DPO on the parent's data only the current version's, SFT
    every set's best answer at most; the held-out share is only scored."""
    if stage == "reward":
        sets = data.ranked_sets
        if settings.get("continue_from"):
            sets = data.new_sets + settings.get("replay", 1.0) * (data.ranked_sets - data.new_sets)
    elif stage == "dpo":
        sets = data.current_sets if settings.get("data") == "parent" else data.ranked_sets
    elif stage == "sft":
        sets = data.ranked_sets
    else:
        return data.ranked_sets
    return round(sets * (1 - settings["eval_fraction"]))


def measured(job: Job, stage: str) -> tuple[float, float] | None:
    """(seconds, units of work) of one stage in a finished job, from what the job recorded on success."""
    result = job.params.get("result") or {}
    params = {k: v for k, v in job.params.items() if k != "result"}
    settings = stage_settings(job.kind, params, stage)
    if job.status != "succeeded" or not settings:
        return None
    budget = result.get("kl_budget") or {}
    if stage == "kl_budget":
        seconds, units = budget.get("seconds"), budget.get("answers", 0) * settings["max_new_tokens"]
    else:
        seconds = stage_seconds(job.kind, result, stage, budget.get("seconds", 0.0))
        sets = result.get(trained_key(job.kind, stage), 0)
        units = work(stage, settings, sets or 0)
    if not isinstance(seconds, int | float) or units <= 0:
        return None
    return float(seconds), units


def trained_key(kind: str, stage: str) -> str:
    """Where a finished job's result says how much its stage trained on: sets, or answers for SFT."""
    unit = "answers" if stage == "sft" else "sets"
    return f"{stage}_{unit}" if kind == "round" else f"train_{unit}"


def stage_seconds(kind: str, result: dict[str, Any], stage: str, budget_seconds: float) -> float | None:
    """A finished job's seconds in one stage, its KL budget's apart (a round times it apart; a PPO or DPO job's
    seconds include it)."""
    if kind == "round":
        return result.get("stage_seconds", {}).get(stage)
    seconds = result.get("seconds")
    return seconds - budget_seconds if isinstance(seconds, int | float) else None


def rate(stage: str, history: list[Job], on_gpu: bool) -> tuple[float, str]:
    """Seconds per unit for a stage: the newest finished job's own rate, else the default."""
    for job in sorted(history, key=lambda j: j.id or 0, reverse=True):
        try:
            seen = measured(job, stage)
        except (TypeError, ValueError):  # a job launched with settings this version no longer has
            continue
        if seen is not None:
            return seen[0] / seen[1], f"rate of job {job.id}"
    if on_gpu:
        return CPU_RATES[stage] / GPU_SPEEDUP, "rough GPU guess: no job has run here yet"
    return CPU_RATES[stage], "default CPU rate: no job has run here yet"


def estimate_job(
    kind: str, params: dict[str, Any], *, data: TrainingData, history: list[Job], on_gpu: bool | None = None
) -> Estimate:
    """How long `kind` with `params` would take now. ValueError for settings the stage refuses."""
    gpu = has_gpu() if on_gpu is None else on_gpu
    stages = []
    for stage in STAGES:
        settings = stage_settings(kind, params, stage)
        if not settings:
            continue
        sets = stage_sets(stage, settings, data)
        per_unit, basis = rate(stage, history, gpu)
        stages.append(StageEstimate(stage, work(stage, settings, sets) * per_unit, basis))
    return Estimate(stages)


def has_gpu() -> bool:
    """An NVIDIA driver on this machine (checked without importing torch, which the web process does not load)."""
    return os.path.exists("/proc/driver/nvidia/version")
