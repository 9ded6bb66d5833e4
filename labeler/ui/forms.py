"""Forms made from stage config dataclasses: one input per field, labelled with its help text."""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields

import gradio as gr

HIDDEN = {"home", "db", "device", "log_every"}


def _component(f, kind, default):
    label = f"{f.name}: {f.metadata.get('help', '')}"
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return gr.Dropdown(list(typing.get_args(kind)), value=default, label=label)
    if kind is bool:
        return gr.Checkbox(value=default, label=label)
    if kind is int or kind == int | None:
        return gr.Number(value=default, precision=0, label=label)
    if kind is float:
        return gr.Number(value=default, label=label)
    if kind == list[str] | None:
        return gr.Textbox(value=" ".join(default or []), label=label + " (space separated)")
    return gr.Textbox(value="" if default is None else str(default), label=label)


def config_form(config_cls: type, *, hidden: set[str] = HIDDEN) -> dict[str, gr.components.Component]:
    """Components for every visible field, in declaration order."""
    out = {}
    hints = typing.get_type_hints(config_cls)
    for f in fields(config_cls):
        if f.name in hidden:
            continue
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
        out[f.name] = _component(f, hints[f.name], default)
    return out


def form_values(config_cls: type, names: list[str], values: tuple) -> dict:
    """Form values back to typed config values (validated by building the dataclass)."""
    hints = typing.get_type_hints(config_cls)
    params = {}
    for name, value in zip(names, values, strict=True):
        kind = hints[name]
        if kind == list[str] | None:
            value = value.split() or None
        elif kind is int or kind == int | None:
            value = None if value in (None, "") else int(value)
        elif isinstance(value, str) and kind is not str and typing.get_origin(kind) is not typing.Literal:
            value = value or None
        params[name] = value
    config_cls(**params)  # raises on a bad value before anything starts
    return params
