"""Plots people compare over time, one way everywhere: a legend naming every series (no fixed height, which cut the
legend's entries off), numbers without trailing zeros, and for per-round or per-version figures a marker at every
point (a line of one point draws nothing) with the latest values in the caption.

    plot = trend_plot("round", "Reward-model held-out accuracy", elem_id="round-plot-0")
    return gr.update(value=frame, caption=latest(frame, "round"))
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

NUMBER = "~g"  # d3's format: 0.65 and 3, not 0.650000 and 3.000000


def trend_plot(
    x: str, label: str, *, color: str = "series", legend: str = "measure", y_title: str = "value", **kw: Any
) -> gr.ScatterPlot:
    """A marker per (x, series) point: rounds, versions, reward models."""
    return gr.ScatterPlot(
        x=x,
        y="value",
        color=color,
        label=label,
        y_title=y_title,
        color_title=legend,
        x_axis_format=NUMBER,
        y_axis_format=NUMBER,
        **kw,
    )


def series_plot(
    x: str, label: str, *, color: str = "series", legend: str = "stage: metric", **kw: Any
) -> gr.LinePlot:
    """A line per series over many points (training steps, KL)."""
    return gr.LinePlot(
        x=x, y="value", color=color, label=label, color_title=legend, y_axis_format=NUMBER, **kw
    )


def latest(frame: pd.DataFrame, x: str, color: str = "series") -> str:
    """The newest point's values, by series: what a single-point panel says in words."""
    if frame.empty:
        return "No points yet."
    last = frame[frame[x] == frame[x].max()]
    values = "; ".join(f"{row[color]} {row['value']:.3g}" for _, row in last.iterrows())
    return f"Latest ({x} {frame[x].max():g}): {values}"


def with_caption(frame: pd.DataFrame, x: str, color: str = "series") -> dict:
    return gr.update(value=frame, caption=latest(frame, x, color))
