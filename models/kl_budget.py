"""Keeping a trained policy within a KL budget from the base: measure KL(policy || base) on the policy's own
sampled answers, and where it is over the budget scale the LoRA adapter's update back toward the base (the weights
base + s * B A, 0 < s < 1, lie on the straight line from the base to the trained policy) until it fits; or, with
`toward_start`, only this round's update back toward the adapter it started from (the parent version's), keeping
what earlier rounds learned. Near the
base KL grows as the square of the update's size, so s = sqrt(budget / KL) is the first guess; after that the power
KL ~ s^k is read off the last two measures, or, once one scale fits and one does not, off those two (a bracket),
and a fit that lands well under the budget (below FULL x budget) moves back up inside the bracket while measures
are left. A fit with no scale inside the budget after its tries takes up to `extra` more measures aimed lower (at
LATE_MARGIN x budget: the measures are noisy, and a fit that keeps landing just over needs room). The model ends at
the largest scale measured inside the budget. The same seed samples every measure, so they differ by the scale,
not by the draw.

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
LATE_MARGIN = 0.8  # where no measure fitted within the tries, aim this far under for the extra ones
FULL = 0.85  # a fit under FULL x budget leaves enough of the budget unused to be worth another measure
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


def power_through(low: tuple[float, float], high: tuple[float, float], floor: float = 0.0) -> float:
    """The power k of KL - floor ~ scale^k through two (scale, KL) measures, within POWER_RANGE (POWER where
    undefined). `floor`: the KL at scale 0 (0 toward the base; the parent's toward the parent)."""
    (scale0, kl0), (scale1, kl1) = low, high
    kl0, kl1 = kl0 - floor, kl1 - floor
    if kl0 <= 0 or kl1 <= 0 or scale0 == scale1 or kl0 == kl1:
        return POWER
    power = math.log(kl1 / kl0) / math.log(scale1 / scale0)
    return min(max(power, POWER_RANGE[0]), POWER_RANGE[1])


def next_factor(measures: list[tuple[float, float]], target: float, floor: float = 0.0) -> float:
    """The factor to scale the update by so that KL - floor ~ scale^k lands at `target`: k is POWER after one
    measure, else the power through the last two (within POWER_RANGE)."""
    excess = measures[-1][1] - floor
    power = power_through(measures[-2], measures[-1], floor) if len(measures) > 1 else POWER
    return ((target - floor) / excess) ** (1 / power) if excess > 0 and target > floor else MARGIN


def bracket(
    measures: list[tuple[float, float]], budget: float
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The largest scale measured inside the budget and the smallest measured over it, when both exist and the
    first is below the second (KL grows with the scale)."""
    inside = [m for m in measures if m[1] <= budget]
    over = [m for m in measures if m[1] > budget]
    if not inside or not over:
        return None
    low, high = max(inside), min(over)
    return (low, high) if low[0] < high[0] else None


def next_scale(
    measures: list[tuple[float, float]], budget: float, margin: float = MARGIN, floor: float = 0.0
) -> float | None:
    """The scale to measure next, or None when the fit is done: over the budget, the scale predicted to land at
    `margin` x budget (`next_factor`); inside it but under FULL x budget with an over-budget scale measured, the
    scale inside that bracket predicted by the power through its ends (kept a tenth of the bracket from each)."""
    scale, kl = measures[-1]
    if kl > budget:
        return scale * next_factor(measures, margin * budget, floor)
    ends = bracket(measures, budget)
    if kl >= FULL * budget or ends is None:
        return None
    (low, low_kl), (high, _) = ends
    ratio = (MARGIN * budget - floor) / (low_kl - floor) if low_kl > floor else 0.0
    guess = low * ratio ** (1 / power_through(*ends, floor)) if ratio > 0 else high
    room = (high - low) / 10
    return min(max(guess, low + room), high - room)


def adapter_weights(model: PeftModel, name: str | None = None) -> dict[str, torch.Tensor]:
    """Copies of an adapter's LoRA A and B weights by parameter name (`name`: the active adapter by default)."""
    name = name or model.active_adapter
    marks = (f"lora_A.{name}.", f"lora_B.{name}.")
    return {n: p.detach().clone() for n, p in model.named_parameters() if any(m in n for m in marks)}


def load_adapter_weights(model: PeftModel, weights: dict[str, torch.Tensor]) -> None:
    """Copy `weights` (`adapter_weights`) into the model's parameters of the same names."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def toward_start(model: PeftModel, start: dict[str, torch.Tensor]) -> Callable[[float], None]:
    """A `rescale` for `fit_to_budget` that moves the adapter along the line from `start` (its weights before this
    round's training, `adapter_weights`) to its trained weights, A and B alike: scale s sets each LoRA weight to
    start + s (trained - start), so scaling back gives up this round's update and keeps what the adapter held."""
    end = adapter_weights(model)
    if set(end) != set(start):
        raise ValueError("the adapter's weights before training do not match its LoRA layers now")
    params = dict(model.named_parameters())
    scale = 1.0

    def rescale(factor: float) -> None:
        nonlocal scale
        scale *= factor
        with torch.no_grad():
            for name, trained in end.items():
                params[name].copy_(start[name] + scale * (trained - start[name]))

    return rescale


def fit_to_budget(
    measure: Callable[[], float],
    rescale: Callable[[float], None],
    *,
    budget: float,
    tries: int = 5,
    extra: int = 2,
    first: float | None = None,
    floor: float = 0.0,
) -> BudgetFit:
    """Measure KL; while `next_scale` names another scale (and measures are left of `tries`, or of `tries + extra`
    while none has fitted), rescale the update to it and measure again. The model ends at the largest scale
    measured inside the budget (rescaled back to it if a later measure went over); `within` says whether any fit
    (none may, after every measure). `first`: the KL at the current scale, already measured (it counts as one);
    `floor`: the KL at scale 0 where it is not 0 (scaling toward a parent adapter), which the power law is
    read above."""
    if budget <= 0:
        raise ValueError(f"the KL budget must be > 0 nats, got {budget}")
    kl = measure() if first is None else first
    fit = BudgetFit(budget=budget, kl_before=kl, kl=kl, measures=[(1.0, kl)])
    while (scale := next_scale(fit.measures, budget, margin_after(fit.measures, tries), floor)) is not None:
        fitted = any(m_kl <= budget for _, m_kl in fit.measures)
        if len(fit.measures) >= tries + (0 if fitted else extra):
            break
        rescale(scale / fit.scale)
        fit.scale = scale
        fit.kl = measure()
        fit.measures.append((scale, fit.kl))
    ends = bracket(fit.measures, budget)
    if fit.kl > budget and ends is not None:
        rescale(ends[0][0] / fit.scale)
        fit.scale, fit.kl = ends[0]
    return fit


def margin_after(measures: list[tuple[float, float]], tries: int) -> float:
    """What share of the budget the next measure aims at: MARGIN within the tries, LATE_MARGIN after them."""
    return MARGIN if len(measures) < tries else LATE_MARGIN
