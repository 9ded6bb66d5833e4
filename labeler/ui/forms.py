"""Forms made from stage config dataclasses: one input per field, with a readable label and the field's help as
its hint; the fields most runs change first, the rest under "Advanced settings"; presets fill the form in one
click. The inputs keep the fields' declaration order (the API's argument order), whatever the layout.

    form = config_form(RoundConfig, kind="round")    # {field name: component}, declaration order
    params = form_values(RoundConfig, list(form), values)
"""

from __future__ import annotations

import re
import typing
from dataclasses import MISSING, fields

import gradio as gr

from rlhf.train.configs import Range, RangeError, field_range

HIDDEN = {"home", "db", "device", "log_every"}

# the fields a run usually sets, shown first; every other field sits under "Advanced settings"
BASIC: dict[str, set[str]] = {
    "round": {
        "optimizer",
        "switch",
        "sft",
        "reward_epochs",
        "reward_learning_rate",
        "ppo_steps",
        "ppo_batch_prompts",
        "ppo_learning_rate",
        "ppo_max_new_tokens",
        "ppo_kl_coef",
        "ppo_kl_budget",
        "dpo_beta",
        "dpo_kl_budget",
    },
    "reward": {"model", "trainer", "continue_from", "epochs", "learning_rate", "batch_sets", "eval_fraction"},
    "ppo": {
        "reward_model",
        "steps",
        "batch_prompts",
        "learning_rate",
        "max_new_tokens",
        "kl_coef",
        "target_kl",
        "kl_budget",
    },
    "dpo": {"trainer", "data", "beta", "epochs", "learning_rate", "batch_sets", "kl_budget"},
    "sft": {"store", "data", "epochs", "learning_rate", "batch_size", "make_current"},
}

# one-click settings per job kind (fields not named keep their defaults). A round's GPU preset keeps DPO's
# recipe as measured on the CPU (its KL budget is over answers of the same length, so it means the same); only
# the sizes PPO and the reward model use change, as a GPU makes them cheap.
ROUND_DEFAULT_PRESET = "Round on CPU (the defaults: the recipe bench/loop.py measured)"
PRESETS: dict[str, dict[str, dict[str, object]]] = {
    "round": {  # one recipe (the round's defaults, measured by bench/loop.py) at two sizes
        ROUND_DEFAULT_PRESET: {},
        "Full round on a GPU (the same recipe; PPO's and the reward model's sizes for a GPU)": {
            "reward_max_length": 1024,
            "ppo_steps": 64,
            "ppo_batch_prompts": 32,
            "ppo_max_new_tokens": 256,
        },
    },
    "reward": {
        "Quick reward model on CPU": {"epochs": 1, "batch_sets": 4, "max_length": 256},
        "Full reward model on a GPU": {"epochs": 2, "batch_sets": 16, "max_length": 1024},
    },
    "ppo": {
        "Quick PPO on CPU": {"steps": 8, "batch_prompts": 4, "max_new_tokens": 48},
        "Full PPO on a GPU": {"steps": 64, "batch_prompts": 32, "max_new_tokens": 256},
    },
}

WORDS = {
    "lora": "LoRA",
    "kl": "KL",
    "ppo": "PPO",
    "dpo": "DPO",
    "lr": "learning-rate",
    "eos": "EOS",
    "hf": "HF",
}


def label_of(name: str) -> str:
    """`reward_learning_rate` -> "Reward learning rate", `ppo_kl_coef` -> "PPO KL coef"."""
    words = [WORDS.get(w, w) for w in name.split("_")]
    text = " ".join(words)
    return text[0].upper() + text[1:] if text else text


def _hint(f) -> str:
    text = str(f.metadata.get("help", ""))
    return re.sub(r"\s+", " ", text).strip()


def _component(f, kind, default, allowed: Range | None):
    label, info = label_of(f.name), _hint(f) or None
    if allowed is not None:
        info = f"{info or ''} ({allowed.text()})".strip()
    common: dict[str, typing.Any] = {"label": label, "info": info, "render": False}
    bounds: dict[str, typing.Any] = {"minimum": allowed.low, "maximum": allowed.high} if allowed else {}
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return gr.Dropdown(list(typing.get_args(kind)), value=default, **common)
    if kind is bool:
        return gr.Checkbox(value=default, **common)
    if kind is int or kind == int | None:
        return gr.Number(value=default, precision=0, **bounds, **common)
    if kind is float:
        return gr.Number(value=default, **bounds, **common)
    if kind == list[str] | None:
        return gr.Textbox(value=" ".join(default or []), **{**common, "label": label + " (space separated)"})
    return gr.Textbox(value="" if default is None else str(default), **common)


def config_form(
    config_cls: type, *, hidden: set[str] = HIDDEN, kind: str | None = None
) -> dict[str, gr.components.Component]:
    """Components for every visible field, in declaration order, laid out where this is called: the `kind`'s
    basic fields first, the others in a closed "Advanced settings" accordion (all of them without a kind)."""
    out = {}
    hints = typing.get_type_hints(config_cls)
    for f in fields(config_cls):
        if f.name in hidden:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        out[f.name] = _component(f, hints[f.name], default, field_range(config_cls, f.name))
    basic = BASIC.get(kind or "", set(out))
    for name, component in out.items():
        if name in basic:
            component.render()
    rest = [c for name, c in out.items() if name not in basic]
    if rest:
        with gr.Accordion("Advanced settings", open=False):
            for component in rest:
                component.render()
    return out


def preset_values(kind: str, preset: str, form: dict[str, gr.components.Component]) -> list:
    """The form's values under `preset`: its fields set, the others back at their defaults."""
    chosen = PRESETS.get(kind, {}).get(preset)
    if chosen is None:
        raise ValueError(f"no preset {preset!r} for {kind} jobs")
    return [chosen.get(name, component.value) for name, component in form.items()]


def optional_number(name: str, value: object) -> float | None:
    """A number or nothing from a text box (a setting such as the KL budget that may be left empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except ValueError:
        raise ValueError(f"{label_of(name)} must be a number or left empty, got {value!r}.") from None


def form_values(config_cls: type, names: list[str], values: tuple) -> dict:
    """Form values back to typed config values; ValueError naming the field (by its label) whose value is out
    of range, before anything starts (building the dataclass checks the rest)."""
    hints = typing.get_type_hints(config_cls)
    params = {}
    for name, value in zip(names, values, strict=True):
        kind = hints[name]
        if kind == list[str] | None:
            value = value.split() or None
        elif kind is int or kind == int | None:
            value = None if value in (None, "") else int(value)
        elif kind == float | None:
            value = optional_number(name, value)
        elif isinstance(value, str) and kind is not str and typing.get_origin(kind) is not typing.Literal:
            value = value or None
        params[name] = value
    try:
        config_cls(**params)
    except RangeError as exc:
        raise ValueError(f"{label_of(exc.field)} is {exc.value:g}: it must be {exc.allowed.text()}.") from exc
    return params
