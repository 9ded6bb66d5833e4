"""Keeping a trained policy within a KL budget from the base: measure KL(policy || base) on the policy's own
sampled answers, and where it is over the budget scale the LoRA adapter's update back toward the base (the weights
base + s * B A, 0 < s < 1, lie on the straight line from the base to the trained policy) until it fits. Near the
base KL grows as the square of the update's size, so s = sqrt(budget / KL) is the first guess; after that the power
KL ~ s^k is read off the last two measures. The same seed samples every measure, so they differ by the scale, not
by the draw.

    measure = lambda: mean(sampled_kl(model, tokenizer, prompts, samples=2, sampling=sampling))
    fit = fit_to_budget(measure, lambda factor: scale_adapter(model, factor), budget=4.0)
    fit.scale, fit.kl          # e.g. 0.82, 3.7 (from fit.kl_before 5.6)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from models.divergence import adapter_kl
from models.generation import Messages, SamplingParams, TransformersBackend

MARGIN = 0.95  # aim a little under the budget: the next measure lands inside it more often than not
POWER = 2.0  # KL ~ scale^POWER near the base (KL is second order in a small change of the weights)
POWER_RANGE = (0.5, 4.0)  # the powers read off two measures are kept within this (noise can suggest anything)


@dataclass
class BudgetFit:
    """How a policy was fitted to its budget: KL before and after, the scale kept, every (scale, KL) measured."""

    budget: float
    kl_before: float
    kl: float
    scale: float = 1.0
    measures: list[tuple[float, float]] = field(default_factory=list)

    @property
    def within(self) -> bool:
        return self.kl <= self.budget


def scale_adapter(model: PeftModel, factor: float) -> None:
    """Multiply the active LoRA adapter's update (its B matrices, so B A and the update) by `factor`."""
    name = model.active_adapter
    touched = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer) and name in module.lora_B:
                cast(Any, module.lora_B)[name].weight.mul_(factor)
                touched += 1
    if not touched:
        raise ValueError(f"the model has no LoRA layer of adapter {name!r} to scale")


def sampled_kl(
    model: PeftModel,
    tokenizer,
    prompts: Sequence[Messages],
    *,
    samples: int,
    sampling: SamplingParams,
) -> list[float]:
    """Per answer, the KL of the policy (the model's active adapter) from the base along one of `samples` answers it
    samples to each prompt at `sampling`'s temperature (models/divergence.token_kl): their mean estimates
    KL(policy || base). `sampling.top_p` should be 1: the distributions compared are untruncated."""
    if not prompts:
        return []
    answers = TransformersBackend(model, tokenizer).generate(list(prompts), samples, sampling)
    return adapter_kl(
        model,
        tokenizer,
        prompts=prompts,
        answers=answers,
        temperature=sampling.temperature,
        exact_tokens=True,
        batch=8,
    )


def next_factor(measures: list[tuple[float, float]], target: float) -> float:
    """The factor to scale the update by so that KL ~ scale^k lands at `target`: k is POWER after one measure,
    else the power through the last two (within POWER_RANGE)."""
    scale, kl = measures[-1]
    power = POWER
    if len(measures) > 1:
        scale0, kl0 = measures[-2]
        if kl > 0 and kl0 > 0 and scale != scale0 and kl != kl0:
            power = min(max(math.log(kl / kl0) / math.log(scale / scale0), POWER_RANGE[0]), POWER_RANGE[1])
    return (target / kl) ** (1 / power) if kl > 0 else MARGIN


def fit_to_budget(
    measure: Callable[[], float],
    rescale: Callable[[float], None],
    *,
    budget: float,
    tries: int = 4,
) -> BudgetFit:
    """Measure KL; while it is over `budget` (and measures are left of `tries`), rescale the update by the factor
    predicted to land at MARGIN x budget (`next_factor`), and measure again. The model is left as last measured:
    `within` says whether it fits (it may not after `tries` measures)."""
    if budget <= 0:
        raise ValueError(f"the KL budget must be > 0 nats, got {budget}")
    kl = measure()
    fit = BudgetFit(budget=budget, kl_before=kl, kl=kl, measures=[(1.0, kl)])
    while kl > budget and len(fit.measures) < tries:
        factor = next_factor(fit.measures, MARGIN * budget)
        rescale(factor)
        fit.scale *= factor
        kl = measure()
        fit.kl = kl
        fit.measures.append((fit.scale, kl))
    return fit
