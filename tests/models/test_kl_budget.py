"""The KL budget (models/kl_budget.py): scaling a LoRA update moves the model along the line from the base, and
fitting measures, rescales and stops inside the budget."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from models.generation import SamplingParams
from models.kl_budget import (
    adapter_weights,
    fit_to_budget,
    load_adapter_weights,
    sampled_kl,
    scale_adapter,
    toward_start,
)
from models.tiny import tiny_model_and_tokenizer

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Please write a short poem about the sea."}],
    [{"role": "user", "content": "List three colours."}],
]
SAMPLING = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1.0, seed=0)


def tuned_tiny():
    """The tiny model with a random LoRA update as small as a trained one (KL about 1.5 nats over 8 tokens: a
    random update 10x larger saturates, its KL no longer growing with its size), and its tokenizer."""
    base, tokenizer = tiny_model_and_tokenizer(seed=0)
    torch.manual_seed(1)
    config = LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    model = get_peft_model(base, config).eval()
    scale_adapter(model, 0.1)
    return model, tokenizer


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_scaling_the_update_moves_along_the_line_from_the_base():
    model, _ = tuned_tiny()
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    tuned = logits(model, ids)
    with model.disable_adapter():
        base = logits(model, ids)
    scale_adapter(model, 0.5)
    half = logits(model, ids)
    assert not torch.allclose(half, tuned, atol=1e-4) and not torch.allclose(half, base, atol=1e-4)
    scale_adapter(model, 2.0)  # back to the trained update
    assert torch.allclose(logits(model, ids), tuned, atol=1e-5)
    scale_adapter(model, 0.0)
    assert torch.allclose(logits(model, ids), base, atol=1e-5)


def test_scaling_toward_the_start_gives_up_only_the_rounds_update():
    model, _ = tuned_tiny()
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    parent = logits(model, ids)
    start = adapter_weights(model)
    with torch.no_grad():  # this round's "training": every LoRA weight moves
        for name, p in model.named_parameters():
            if name in start:
                p.add_(0.05 * torch.randn_like(p))
    trained = logits(model, ids)
    trained_weights = adapter_weights(model)
    assert not torch.allclose(trained, parent, atol=1e-4)
    rescale = toward_start(model, start)
    rescale(0.5)  # halfway along the line from the parent adapter to the trained one, A and B alike
    for name, now in adapter_weights(model).items():
        assert torch.allclose(now, (start[name] + trained_weights[name]) / 2, atol=1e-6)
    rescale(0.0)  # the whole update given up: the parent's adapter, not the base
    assert torch.allclose(logits(model, ids), parent, atol=1e-5)
    with model.disable_adapter():
        assert not torch.allclose(logits(model, ids), parent, atol=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        toward_start(model, {k: v for k, v in list(start.items())[1:]})


def test_scaling_a_model_without_lora_layers_says_so():
    model, _ = tuned_tiny()
    model.base_model.model.model.layers = torch.nn.ModuleList()  # no LoRA layer left
    with pytest.raises(ValueError, match="no LoRA layer"):
        scale_adapter(model, 0.5)


def test_sampled_kl_shrinks_as_the_update_shrinks_and_is_zero_without_one():
    model, tokenizer = tuned_tiny()
    full = sampled_kl(model, tokenizer, PROMPTS, samples=8, sampling=SAMPLING)
    assert len(full) == len(PROMPTS) * 8
    scale_adapter(model, 0.3)
    small = sampled_kl(model, tokenizer, PROMPTS, samples=8, sampling=SAMPLING)
    scale_adapter(model, 0.0)
    none = sampled_kl(model, tokenizer, PROMPTS, samples=8, sampling=SAMPLING)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(full) > mean(small) > 0
    assert none == pytest.approx([0.0] * len(none), abs=1e-5)


def test_fitting_a_quadratic_kl_lands_inside_the_budget():
    """KL = 9 s^2 from s = 1 against a budget of 4: one rescale by sqrt(0.95 * 4 / 9) lands at 3.8."""
    state = {"scale": 1.0, "measures": 0}

    def measure() -> float:
        state["measures"] += 1
        return 9.0 * state["scale"] ** 2

    def rescale(factor: float) -> None:
        state["scale"] *= factor

    fit = fit_to_budget(measure, rescale, budget=4.0)
    assert fit.within and fit.kl_before == 9.0 and fit.kl == pytest.approx(3.8)
    assert fit.scale == pytest.approx(state["scale"]) == pytest.approx((3.8 / 9) ** 0.5)
    assert state["measures"] == 2 and len(fit.measures) == 2


def test_fitting_reads_the_power_off_two_measures_and_stops_after_its_tries():
    state = {"scale": 1.0}

    def rescale(factor: float) -> None:
        state["scale"] *= factor

    linear = fit_to_budget(lambda: 9.0 * state["scale"], rescale, budget=4.0)
    # 9 -> 5.85 (the quadratic guess is too little for a linear KL) -> 3.8 (the power read off the two: 1)
    assert linear.within and len(linear.measures) == 3 and linear.kl == pytest.approx(3.8)
    state["scale"] = 1.0
    stubborn = fit_to_budget(lambda: 9.0 + state["scale"], rescale, budget=4.0, tries=3, extra=0)
    assert not stubborn.within and len(stubborn.measures) == 3  # never fits: stops, and says so
    state["scale"] = 1.0
    stubborn = fit_to_budget(lambda: 9.0 + state["scale"], rescale, budget=4.0, tries=3)
    assert not stubborn.within and len(stubborn.measures) == 5  # its 2 extra measures spent, it still says so


def test_a_fit_that_keeps_landing_just_over_takes_extra_measures_aimed_lower():
    """KL = 9 s^2, but never under 4.2 above s = 0.55 (a measure that keeps landing just over): the 3 tries aim at
    3.8 and land at 4.2; the first extra one aims at 0.8 x 4 and fits."""
    state = {"scale": 1.0}

    def rescale(factor: float) -> None:
        state["scale"] *= factor

    def measure() -> float:
        kl = 9.0 * state["scale"] ** 2
        return max(kl, 4.2) if state["scale"] > 0.55 else kl

    fit = fit_to_budget(measure, rescale, budget=4.0, tries=3)
    assert [kl > 4.0 for _, kl in fit.measures] == [True, True, True, False]
    assert fit.within and fit.scale == pytest.approx(state["scale"]) and fit.kl < 0.8 * 4.0 + 0.5


def test_a_fit_far_under_the_budget_moves_back_up_inside_the_bracket():
    """KL = 12.8 s^3: the quadratic guess lands at 2.07, well under 4; the power through the bracket (1, 12.8) and
    (0.545, 2.07) is 3, and the next scale lands at 3.8."""
    state = {"scale": 1.0}

    def rescale(factor: float) -> None:
        state["scale"] *= factor

    fit = fit_to_budget(lambda: 12.8 * state["scale"] ** 3, rescale, budget=4.0)
    assert [round(kl, 2) for _, kl in fit.measures] == [12.8, 2.07, 3.8]
    assert fit.within and fit.kl == pytest.approx(3.8) and fit.scale == pytest.approx(state["scale"])


def test_a_fit_whose_last_measure_goes_over_ends_at_the_largest_scale_that_fitted():
    """A bump (+1 nat between scales 0.6 and 0.7) sends the third and fourth measures over the budget; the fit
    rescales back to the second measure's scale, the largest inside the budget."""
    state = {"scale": 1.0}

    def rescale(factor: float) -> None:
        state["scale"] *= factor

    def measure() -> float:
        scale = state["scale"]
        return 12.8 * scale**3 + (1.0 if 0.6 < scale < 0.7 else 0.0)

    fit = fit_to_budget(measure, rescale, budget=4.0, tries=4)
    assert [kl > 4.0 for _, kl in fit.measures] == [True, False, True, True]
    assert fit.within and fit.scale == pytest.approx(fit.measures[1][0]) == pytest.approx(state["scale"])
    assert fit.kl == fit.measures[1][1]


def test_a_round_whose_parent_leaves_no_room_scales_toward_the_base_instead():
    """The parent's KL is measured first, as the floor of the line toward it; where the budget leaves less than
    MARGIN above it, the fit goes from the trained weights toward the base, and ends inside the budget. With room
    above the parent it stays on the line toward the parent."""
    from rlhf.train.policy_stage import fit_toward_parent
    from rlhf.train.progress import ConsoleReporter

    model, tokenizer = tuned_tiny()
    parent = adapter_weights(model)
    with torch.no_grad():  # this round's "training"
        for name, p in model.named_parameters():
            if name in parent:
                p.add_(0.02 * torch.randn_like(p))
    trained = adapter_weights(model)

    def measure() -> float:
        kls = sampled_kl(model, tokenizer, PROMPTS, samples=2, sampling=SAMPLING)
        return sum(kls) / len(kls)

    full = measure()
    fit, toward, parent_kl = fit_toward_parent(model, parent, measure, full / 2, ConsoleReporter())
    assert parent_kl > full / 2 and toward.startswith("base") and fit.within and fit.kl <= full / 2
    load_adapter_weights(model, trained)
    budget = parent_kl + (full - parent_kl) / 2
    fit, toward, again = fit_toward_parent(model, parent, measure, budget, ConsoleReporter())
    assert again == pytest.approx(parent_kl) and toward == "parent" and fit.within and 0 < fit.scale < 1


def test_a_policy_inside_its_budget_is_left_alone():
    calls: list[float] = []
    fit = fit_to_budget(lambda: 1.5, calls.append, budget=4.0)
    assert fit.within and fit.scale == 1.0 and calls == [] and fit.measures == [(1.0, 1.5)]
    with pytest.raises(ValueError, match="budget must be > 0"):
        fit_to_budget(lambda: 1.5, calls.append, budget=0.0)


def test_token_kl_sums_each_answer_positions_exact_kl_from_the_base():
    from models.divergence import token_kl

    model, _ = tuned_tiny()
    rows = [([1, 5, 9], [14, 3, 7]), ([2, 4], [8])]
    got = token_kl(model, rows, pad_id=0, temperature=0.7)
    expected = []
    for prompt, answer in rows:
        ids = torch.tensor([prompt + answer])
        positions = slice(len(prompt) - 1, len(prompt) + len(answer) - 1)  # those that predict the answer
        p = torch.log_softmax(logits(model, ids)[0, positions] / 0.7, -1)
        with model.disable_adapter():
            q = torch.log_softmax(logits(model, ids)[0, positions] / 0.7, -1)
        expected.append((p.exp() * (p - q)).sum().item())
    assert got.tolist() == pytest.approx(expected, abs=1e-4) and min(expected) > 0
