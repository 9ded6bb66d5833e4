"""Admin policies tab: versions with lineage, side-by-side samples for one prompt, make current / roll back."""

from __future__ import annotations

import gradio as gr
import pandas as pd
from sqlmodel import Session

from labeler.labels.winrate import WinRate, human_win_rate
from labeler.records.policies import (
    gate_lines,
    make_current,
    policy_by_version,
    policy_versions,
    samples_of,
    switched_by,
    version_kl,
)
from labeler.records.reward_models import reward_names
from labeler.store.db import read_session
from labeler.store.tables import PolicyVersion
from labeler.ui.deps import TabLoad, UIDeps, require_admin
from labeler.ui.plots import trend_plot, with_caption
from labeler.ui.render import content_html, conversation_html, page, text_html
from models.generation import SamplingParams

REFRESH_SECONDS = 10.0


WIN_COLUMNS = ["version", "value", "series"]


def versions_view(session: Session) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lineage table, and the human win-rate over the parent per version with its 95% interval as a plot's
    frame (version, value, series: "win-rate", "95% low", "95% high"; versions without ranked mixed sets left
    out)."""
    versions = policy_versions(session=session)
    by_id = {v.id: v.version for v in versions}
    rewards = reward_names(session=session)
    wins = {v.version: version_win_rate(session, v) for v in versions}
    rows = [
        [
            f"v{v.version}",
            f"v{by_id[v.parent_id]}" if v.parent_id in by_id else "",
            rewards.get(v.reward_model_id, "") if v.reward_model_id is not None else "",
            "yes" if v.is_current else "",
            gate_text(v, wins[v.version]),
            win_rate_text(wins[v.version]),
            kl_text(v.metrics),
            v.adapter_path or "(base)",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        ]
        for v in versions
    ]
    columns = [
        "version",
        "parent",
        "reward model",
        "current",
        "gate",
        "human win-rate vs parent",
        "KL from v0",
        "adapter",
        "created",
    ]
    points = [
        (float(version), float(value), series)
        for version, w in wins.items()
        if w is not None and w.rate is not None and w.low is not None and w.high is not None
        for value, series in ((w.rate, "win-rate"), (w.low, "95% low"), (w.high, "95% high"))
    ]
    plot = pd.DataFrame(points, columns=WIN_COLUMNS).astype({"version": "float64", "value": "float64"})
    return pd.DataFrame(rows, columns=columns), plot


def version_win_rate(session: Session, version: PolicyVersion) -> WinRate | None:
    """How often labelers ranked this version's answers above its parent's in mixed sets (Admin > Prompts &
    guidelines > mixing); None for a version without a parent."""
    if version.parent_id is None or version.id is None:
        return None
    return human_win_rate(session=session, new_version_id=version.id, old_version_id=version.parent_id)


def win_rate_text(result: WinRate | None) -> str:
    """The win-rate with its 95% Wilson interval; blank until mixed sets are ranked."""
    if result is None or result.rate is None or result.low is None or result.high is None:
        return ""
    return f"{result.rate:.2f} ({result.low:.2f}-{result.high:.2f}, {result.comparisons} comparisons)"


def kl_text(metrics: dict) -> str:
    """The version's KL from v0 as its round measured it (labeler/records/policies.version_kl), and how; blank for none."""
    kl = version_kl(metrics)
    if kl is None:
        return ""
    if kl.how != "budget":
        return f"{kl.value:.2f} ({kl.how})"
    update = "round's update" if kl.toward == "parent" else "update"
    scaled = f", {update} x{kl.scale:.2f}" if kl.scale < 1 else ""
    return f"{kl.value:.2f} (budget {kl.budget:g}{scaled})"


STORED_COLUMNS = ["prompt", "left", "right"]


def stored_answers(versions: list[PolicyVersion]) -> dict[int, dict[str, str]]:
    """Per version number, the answers stored for the fixed eval prompts: its own round's "after" samples, and
    the "before" samples of the rounds that started from it (those were its answers too)."""
    by_id = {v.id: v.version for v in versions}
    out: dict[int, dict[str, str]] = {v.version: {} for v in versions}
    for v in versions:
        samples = samples_of(v)
        for s in samples.after:
            out[v.version][s["prompt"]] = s["response"]
        parent = by_id.get(v.parent_id)
        if parent is not None:
            for s in samples.before:
                out[parent].setdefault(s["prompt"], s["response"])
    return out


def stored_side_by_side(versions: list[PolicyVersion], left: int, right: int) -> pd.DataFrame:
    """The eval prompts both versions answered during training, with both answers (no generation: instant)."""
    answers = stored_answers(versions)
    for version in (left, right):
        if version not in answers:
            raise ValueError(f"no policy version v{version}")
    a, b = answers[left], answers[right]
    rows = [[prompt, a[prompt], b[prompt]] for prompt in a if prompt in b]
    return pd.DataFrame(rows, columns=[STORED_COLUMNS[0], f"v{left}", f"v{right}"])


def gate_text(pv: PolicyVersion, win: WinRate | None = None) -> str:
    """The gate's decision on the round that made the version, who switched to it by hand, and, once labelers
    have ranked it against its parent in mixed sets, a loss whose 95% interval lies below even; blank for none."""
    by = switched_by(pv)
    text = (pv.gate_decision or "") + (f"; made current by {', '.join(by)}" if by else "")
    if win is not None and win.high is not None and win.high < 0.5:
        text += "; loses to its parent in human evaluation: consider rolling back"
    return text.lstrip("; ")


def switch_text(pv: PolicyVersion) -> str:
    """What the switch did, and what the gate had said of the version (its lines, where its round had a gate)."""
    said = "".join(f"\n- {line.strip()}" for line in gate_lines(pv))
    return f"v{pv.version} is now current; new sets come from it." + (
        f"\n\nThe gate had said:{said}" if said else ""
    )


def samples_html(pv: PolicyVersion) -> str:
    """The fixed eval prompts (whole conversations) answered before and after the round that made this version."""
    samples = samples_of(pv)
    before = {s["prompt"]: s["response"] for s in samples.before}
    after = samples.after
    if not after:
        return page(
            f"<p>v{pv.version} has no recorded samples (the initial model, or made outside a round).</p>"
        )
    parts = [f"<h3>v{pv.version}: samples before and after its round</h3>"]
    gate = gate_lines(pv)
    if gate:
        lines = "".join(f"<li>{text_html(line.strip())}</li>" for line in gate)
        parts.append(f"<p><strong>Its round's gate</strong></p><ul>{lines}</ul>")
    for s in after:
        messages = s.get("messages") or [
            {"role": "user", "content": s["prompt"]}
        ]  # older rounds kept one turn
        earlier = before.get(s["prompt"])
        parts.append(
            conversation_html(messages)
            + "<p><em>Before:</em></p>"
            + (content_html(earlier) if earlier is not None else "<p>(not recorded)</p>")
            + f"<p><em>After:</em></p>{content_html(s['response'])}"
        )
    return page("<hr>".join(parts))


def build_policies_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Policies"):
        table = gr.Dataframe(
            label="Policy versions (lineage; refreshes on its own)",
            interactive=False,
            elem_id="policy-versions",
        )
        win_plot = trend_plot(
            "version",
            "Human win-rate vs parent, per version (95% interval)",
            y_title="win-rate",
            y_lim=[0, 1],
            elem_id="version-win-rate",
        )
        timer = gr.Timer(REFRESH_SECONDS, active=False)  # switched on at page load for admins only
        with gr.Row():
            target = gr.Number(label="Version", precision=0, value=0)
            switch = gr.Button("Make current / roll back")
            show = gr.Button("Show its samples before / after training")
        samples_md = gr.HTML(elem_id="policy-samples")
        switch_status = gr.Markdown()
        gr.Markdown("### Compare two versions")
        with gr.Row():
            left_v = gr.Number(label="Left version", precision=0, value=0)
            right_v = gr.Number(label="Right version", precision=0, value=0)
            stored = gr.Button("Stored answers side by side (instant)")
        stored_table = gr.Dataframe(
            headers=STORED_COLUMNS,
            label="The eval prompts both versions answered during training",
            interactive=False,
            wrap=True,
            column_widths=["20%", "40%", "40%"],  # both versions' answers on screen, wrapped
            elem_id="stored-side-by-side",
        )
        prompt = gr.Textbox(label="Or a prompt of your own", lines=2)
        compare = gr.Button("Generate side by side (left first, then right)")
        with gr.Row():
            left = gr.HTML(elem_id="compare-left")
            right = gr.HTML(elem_id="compare-right")

    def on_list(request: gr.Request):
        require_admin(engine, request)
        with read_session(engine) as session:
            table, wins = versions_view(session)
        return table, with_caption(wins, "version")

    def on_switch(request: gr.Request, version: float):
        admin = require_admin(engine, request)
        with Session(engine) as session:
            try:
                pv = make_current(session=session, version=int(version), by=admin.name)
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
            table, wins = versions_view(session)
            return switch_text(pv), table, with_caption(wins, "version")

    def sample(version: int, text: str) -> str:
        with read_session(engine) as session:
            pv = policy_by_version(session=session, version=version)
        if pv is None:
            raise gr.Error(f"No policy version v{version}.")
        if deps.pool is None:
            raise gr.Error("This server has no model loaded for samples.")
        sampling = SamplingParams(max_new_tokens=128, temperature=0.0)
        [[completion]] = deps.pool.generate_as(
            version=pv.version,
            adapter_path=pv.adapter_path,
            prompts=[[{"role": "user", "content": text}]],
            n=1,
            sampling=sampling,
        )
        head = f"<p><strong>v{version}</strong> ({completion.token_count} tokens, {completion.finish_reason})</p>"
        return page(head, content_html(completion.text))

    def on_compare(request: gr.Request, text: str, a: float, b: float):
        """Each side as soon as it is written (greedy, 128 tokens at most), the left one first."""
        require_admin(engine, request)
        if not text.strip():
            raise gr.Error("Type a prompt first.")
        if deps.pool is None:
            raise gr.Error("No model is loaded in this app.")
        left_text = sample(int(a), text)
        yield left_text, page(f"<p><em>Writing v{int(b)}'s answer…</em></p>")
        yield left_text, sample(int(b), text)

    def on_stored(request: gr.Request, a: float, b: float) -> pd.DataFrame:
        require_admin(engine, request)
        with read_session(engine) as session:
            versions = policy_versions(session=session)
        try:
            return stored_side_by_side(versions, int(a), int(b))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def on_samples(request: gr.Request, version: float) -> str:
        require_admin(engine, request)
        with read_session(engine) as session:
            pv = policy_by_version(session=session, version=int(version))
        if pv is None:
            raise gr.Error(f"No policy version v{int(version)}.")
        return samples_html(pv)

    switch.click(on_switch, [target], [switch_status, table, win_plot], api_name="admin_make_current")
    show.click(on_samples, [target], samples_md, api_name="admin_policy_samples")
    compare.click(on_compare, [prompt, left_v, right_v], [left, right], api_name="admin_compare")
    stored.click(on_stored, [left_v, right_v], stored_table, api_name="admin_stored_compare")
    timer.tick(on_list, None, [table, win_plot], show_progress="hidden", api_visibility="private")
    return TabLoad(lambda request: (*on_list(request), gr.Timer(active=True)), [table, win_plot, timer])
