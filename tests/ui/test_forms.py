"""The launch forms read as people write: labels without raw field names, the field's help as a hint, the basic
fields first and the rest under "Advanced settings", presets that name real fields and fill the form, and the
inputs in the fields' declaration order (the API's argument order)."""

from dataclasses import asdict, fields

import gradio as gr
import pytest

from labeler.ui.forms import (
    BASIC,
    HIDDEN,
    PRESETS,
    ROUND_DEFAULT_PRESET,
    config_form,
    form_values,
    label_of,
    preset_values,
)
from rlhf.train.configs import JOB_KINDS, RoundConfig, job_config


def test_labels_are_words_and_hints_carry_the_help():
    assert label_of("reward_learning_rate") == "Reward learning rate"
    assert label_of("ppo_kl_coef") == "PPO KL coef" and label_of("lora_r") == "LoRA r"
    with gr.Blocks():
        form = config_form(job_config("round"), kind="round")
    assert all(":" not in c.label and "_" not in c.label for c in form.values())
    assert form["reward_epochs"].info == "passes over the training sets (at least 1 and at most 1000)"
    # the browser's number inputs carry the same bounds the server checks
    assert (form["ppo_steps"].minimum, form["ppo_steps"].maximum) == (1, None)
    assert (form["reward_learning_rate"].minimum, form["reward_learning_rate"].maximum) == (0, 1)


def test_a_value_out_of_range_is_refused_by_its_label_before_anything_starts():
    config = job_config("round")
    with gr.Blocks():
        form = config_form(config, kind="round")
    values = [c.value for c in form.values()]
    assert form_values(config, list(form), tuple(values))["ppo_steps"] == form["ppo_steps"].value
    values[list(form).index("ppo_steps")] = 0
    with pytest.raises(ValueError, match=r"^PPO steps is 0: it must be at least 1\.$"):
        form_values(config, list(form), tuple(values))


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_basic_fields_and_presets_name_real_fields_and_keep_declaration_order(kind):
    config = job_config(kind)
    names = [f.name for f in fields(config) if f.name not in HIDDEN]
    assert BASIC[kind] <= set(names)
    with gr.Blocks() as demo:
        form = config_form(config, kind=kind)
    assert list(form) == names
    accordions = [b for b in demo.blocks.values() if isinstance(b, gr.Accordion)]
    assert [a.label for a in accordions] == ["Advanced settings"]
    for preset, values in PRESETS.get(kind, {}).items():
        assert set(values) <= set(names), preset
        filled = dict(zip(form, preset_values(kind, preset, form), strict=True))
        assert all(filled[k] == v for k, v in values.items())
        assert all(filled[k] == form[k].value for k in form if k not in values)
    with pytest.raises(ValueError, match="no preset 'nope'"):
        preset_values(kind, "nope", form)


def test_a_setting_that_may_be_empty_reads_as_a_number_or_none():
    config = job_config("round")
    with gr.Blocks():
        form = config_form(config, kind="round")
    names, values = list(form), [c.value for c in form.values()]

    def submitted(name: str, text: str) -> dict:
        return form_values(
            config, names, tuple(text if n == name else v for n, v in zip(names, values, strict=True))
        )

    assert form["ppo_rules_judge"].value == "" and submitted("ppo_rules_judge", "")["ppo_rules_judge"] is None
    for optimiser in ("ppo", "dpo"):  # both optimisers' KL budget: 4 by default, none when emptied
        name = f"{optimiser}_kl_budget"
        assert form[name].value == "4.0" and submitted(name, "")[name] is None
    assert submitted("dpo_kl_budget", " 4 ")["dpo_kl_budget"] == 4.0
    assert submitted("ppo_no_eos_penalty", "-1")["ppo_no_eos_penalty"] == -1.0  # a number, not the text
    with pytest.raises(ValueError, match=r"^DPO KL budget must be a number or left empty, got 'four'\.$"):
        submitted("dpo_kl_budget", "four")
    with pytest.raises(ValueError, match=r"^DPO KL budget is 0: it must be more than 0\.$"):
        submitted("dpo_kl_budget", "0")


def test_the_round_presets_are_one_recipe_the_default_being_the_rounds_own_defaults():
    """The default preset fills exactly RoundConfig()'s values (what `rankloop round` and bench/loop.py run); the
    GPU preset changes sizes only, never DPO's recipe."""
    with gr.Blocks():
        form = config_form(RoundConfig, kind="round")
    filled = dict(zip(form, preset_values("round", ROUND_DEFAULT_PRESET, form), strict=True))
    names, values = list(form), tuple(filled.values())
    assert form_values(RoundConfig, names, values) == {
        k: v for k, v in asdict(RoundConfig()).items() if k in form
    }
    gpu = [p for p in PRESETS["round"] if p != ROUND_DEFAULT_PRESET]
    assert len(gpu) == 1 and not any(
        k.startswith("dpo_") or k == "optimizer" for k in PRESETS["round"][gpu[0]]
    )
    assert RoundConfig().optimizer == "dpo" and RoundConfig().switch == "gate"
