"""What the policy optimisers (PPO and DPO) share around their training loops: reading their inputs from the
store, greedy samples of fixed prompts before and after, and storing the result as version K+1 once, however
many processes trained it (`accelerate launch`, torchrun).

    inputs = read_inputs(engine, sample_count=4, need_reward=True, reward_model="r2")
    ...                                          # train
    version, folder = save_version(engine, inputs, home=home, save=write_adapter, metrics=m, make_current=True)
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.records.policies import next_policy_version, register_policy_version
from labeler.records.rounds import PolicyInputs, policy_inputs
from labeler.store.db import read_session
from models.adapters import save_adapter
from models.generation import Messages, SamplingParams, TransformersBackend
from models.kl_budget import (
    MARGIN,
    BudgetFit,
    adapter_weights,
    fit_to_budget,
    load_adapter_weights,
    sampled_kl,
    scale_adapter,
    toward_start,
)
from rlhf.train.progress import Reporter

logger = logging.getLogger(__name__)
BUDGET_MEASURES = 5  # KL measures at most when fitting a version to its budget (the first at full scale)
BASE_MEASURES = 3  # more, toward the base, where no scale toward the parent fitted (and 2 more if none fits)


def read_inputs(
    engine: Engine,
    *,
    sample_count: int,
    need_reward: bool,
    reward_model: str | None = None,
    parent_version: int | None = None,
) -> PolicyInputs:
    """The parent version (the current one, or `parent_version`), reward model and prompts, read in one short
    transaction (no model is loaded yet)."""
    with read_session(engine) as session:
        return policy_inputs(
            session=session,
            sample_count=sample_count,
            need_reward=need_reward,
            reward_model=reward_model,
            parent_version=parent_version,
        )


def samples(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int) -> list[dict]:
    """Greedy answers of `model` (with its active adapter) to fixed eval prompts, kept before and after a round."""
    backend = TransformersBackend(model, tokenizer)
    outs = backend.generate(prompts, 1, SamplingParams(max_new_tokens=max_new_tokens, temperature=0))
    return [
        {"prompt": p[-1]["content"], "messages": p, "response": o[0].text}
        for p, o in zip(prompts, outs, strict=True)
    ]


def budget_prompts(prompts: Sequence[Messages], count: int, seed: int) -> list[Messages]:
    """`count` distinct training prompts (by their text), drawn with `seed`: the same on every process."""
    unique = list({repr(p): p for p in prompts}.values())
    return random.Random(seed).sample(unique, min(count, len(unique)))


def mean_over_processes(values: list[float]) -> float:
    """The mean of every process's values (each measured its share of the prompts)."""
    state = PartialState()
    if state.num_processes > 1:
        shares: list[list[float] | None] = [None] * state.num_processes
        torch.distributed.all_gather_object(shares, values)
        values = [v for share in shares for v in share or []]
    return sum(values) / max(1, len(values))


def budget_start(model, config: Any, continued: bool, name: str | None = None) -> dict | None:
    """Before training: the policy adapter's weights to scale back toward (`kl_budget_from=parent`, when the round
    continues the parent version's adapter), else None (scale toward the base)."""
    wanted = config.kl_budget is not None and config.kl_budget_from == "parent" and continued
    return adapter_weights(model, name) if wanted else None


def keep_within_budget(
    model, tokenizer, prompts: Sequence[Messages], config: Any, reporter: Reporter, anchor: dict | None = None
) -> dict | None:
    """Where `config.kl_budget` is set, fit the trained model (a PeftModel, its policy adapter active) to it
    (models/kl_budget.py) on `config.kl_budget_prompts` of `prompts`, each process sampling its share, scaling
    its update toward the base, or toward `anchor` (`budget_start`: the adapter before this round); returns what
    the version's metrics record (None: no budget)."""
    if config.kl_budget is None:
        return None
    start = time.perf_counter()
    state = PartialState()
    chosen = budget_prompts(prompts, config.kl_budget_prompts, config.seed)
    mine = chosen[state.process_index :: state.num_processes]
    sampling = SamplingParams(
        max_new_tokens=config.max_new_tokens,
        temperature=config.kl_budget_temperature,
        top_p=1.0,  # the log-probabilities compared are untruncated
        seed=config.seed,
    )
    reporter.start(BUDGET_MEASURES, "kl budget")

    def measure() -> float:
        kl = mean_over_processes(
            sampled_kl(model, tokenizer, mine, samples=config.kl_budget_samples, sampling=sampling)
        )
        reporter.step({"kl": kl})
        return kl

    if anchor is None:
        fit = fit_to_budget(
            measure,
            lambda factor: scale_adapter(model, factor),
            budget=config.kl_budget,
            tries=BUDGET_MEASURES,
        )
        toward, parent_kl = "base", None
    else:
        fit, toward, parent_kl = fit_toward_parent(model, anchor, measure, config.kl_budget, reporter)
    if not fit.within:
        logger.warning(
            "KL %.2f is still over the budget %.2f after %d measures", fit.kl, fit.budget, len(fit.measures)
        )
    return {
        "budget": fit.budget,
        "kl_before": fit.kl_before,
        "kl": fit.kl,
        "scale": fit.scale,
        "scaled_toward": toward,
        "parent_kl": parent_kl,  # the KL at scale 0 toward the parent (measured first), None toward the base
        "within": fit.within,
        "measures": fit.measures,
        "prompts": len(chosen),
        "answers": (len(fit.measures) + (parent_kl is not None))
        * len(chosen)
        * config.kl_budget_samples,  # the estimate's unit of work
        "seconds": time.perf_counter() - start,
    }


def fit_toward_parent(
    model, anchor: dict, measure: Callable[[], float], budget: float, reporter: Reporter
) -> tuple[BudgetFit, str, float]:
    """Scale this round's update back toward the parent's adapter (`anchor`) until the KL from the base fits: the
    parent's own KL is measured first, as the fit's floor (scale 0). Where the parent leaves no room (its KL at
    MARGIN x budget or more) or no scale fits within BUDGET_MEASURES, scale the whole trained adapter toward the
    base instead. Returns the fit, which way it scaled, and the parent's KL."""
    trained = adapter_weights(model)
    load_adapter_weights(model, anchor)
    floor = measure()
    load_adapter_weights(model, trained)
    first = None
    if floor < MARGIN * budget:
        rescale = toward_start(model, anchor)
        fit = fit_to_budget(measure, rescale, budget=budget, tries=BUDGET_MEASURES - 1, extra=0, floor=floor)
        if fit.within:
            return fit, "parent", floor
        load_adapter_weights(model, trained)  # back to the trained weights
        first = fit.kl_before
    logger.info(
        "the parent's KL %.2f leaves no room in the budget %.2f: scaling toward the base", floor, budget
    )
    reporter.start(BASE_MEASURES + 2, "kl budget, toward the base")
    fit = fit_to_budget(
        measure, lambda factor: scale_adapter(model, factor), budget=budget, tries=BASE_MEASURES, first=first
    )
    return fit, "base (the parent left no room)", floor


def weights_digest(weights: Iterable[torch.Tensor]) -> str:
    """A short fingerprint of trained weights (sums of values, magnitudes and squares over every tensor)."""
    sums = torch.zeros(3, dtype=torch.float64)
    for w in weights:
        v = w.detach().double().cpu()
        sums += torch.stack([v.sum(), v.abs().sum(), (v * v).sum()])
    return " ".join(f"{x:.12e}" for x in sums.tolist())


def check_in_sync(weights: Iterable[torch.Tensor]) -> str:
    """Under several processes, fail unless every one holds the same trained weights (as data-parallel training
    promises), so the one copy the main process saves is everybody's; returns the digest."""
    digest = weights_digest(weights)
    state = PartialState()
    if state.num_processes > 1:
        digests: list[str | None] = [None] * state.num_processes
        torch.distributed.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise RuntimeError(f"the {state.num_processes} processes ended with different weights: {digests}")
        if state.is_main_process:
            logger.info("trained weights agree on all %d processes (digest %s)", state.num_processes, digest)
    return digest


def save_version(
    engine: Engine,
    inputs: PolicyInputs,
    *,
    home: Path,
    save: Callable[[Path], object],
    weights: Iterable[torch.Tensor],
    metrics: dict,
    make_current: bool,
    job_id: int | None = None,
) -> tuple[int, Path]:
    """Save the trained adapter with `save(folder)` and register it as the next version; returns (version,
    folder). Under several processes the weights are checked to agree, every process reads the same number,
    the main process alone writes the files and the row (in one transaction, switching to it when asked), and
    all return once it has."""
    state = PartialState()
    metrics = {**metrics, "weights_digest": check_in_sync(weights), "processes": state.num_processes}
    state.wait_for_everyone()  # every process has trained before any reads the number
    with read_session(engine) as session:
        version = next_policy_version(session=session)
    folder = Path(home) / "models" / f"policy-v{version}"
    state.wait_for_everyone()  # ... and every one has read it before the main process registers
    if state.is_main_process:
        save(folder)
        with Session(engine) as session:
            register_policy_version(
                session=session,
                version=version,
                parent=inputs.parent,
                adapter_path=str(folder),
                reward_model_id=inputs.reward.id if inputs.reward else None,
                metrics={**metrics, "job_id": job_id},
                make_current=make_current,
            )
    state.wait_for_everyone()
    return version, folder


def save_adapter_version(
    engine: Engine,
    inputs: PolicyInputs,
    model,
    *,
    home: Path,
    metrics: dict,
    make_current: bool,
    job_id: int | None,
) -> tuple[int, Path]:
    """`save_version` for a stage that trained a PeftModel's active adapter (DPO, SFT)."""
    return save_version(
        engine,
        inputs,
        home=home,
        save=lambda folder: save_adapter(model, model.active_adapter, folder),
        weights=[p for p in model.parameters() if p.requires_grad],
        metrics=metrics,
        make_current=make_current,
        job_id=job_id,
    )
