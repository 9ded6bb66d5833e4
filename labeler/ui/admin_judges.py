"""Admin "Judges" tab: add a rule judge (a name and its checks, one a line) or a model judge (a model and its
comparison prompt, versioned), see each judge's checks or prompt and how many sets it ranked and abstained on,
and disable or enable one (labeler/labels/judges.py). The generator lets enabled judges rank waiting sets as it
goes. Every handler checks the admin role on the server."""

from __future__ import annotations

import gradio as gr
from sqlmodel import Session

from labeler.labels.judge_worth import JudgeWorth, judge_worth
from labeler.labels.judges import (
    BASE,
    JudgeRow,
    add_judge,
    list_judges,
    set_judge_disabled,
    set_judge_template,
)
from labeler.labels.suggestion_stats import suggestion_stats
from labeler.store.constitution import default_comparison_prompt
from labeler.store.suggestions import set_suggestions, suggestions
from labeler.store.users import UserError
from labeler.ui.deps import TabLoad, UIDeps, require_admin

EXAMPLE = """# one check a line; each answer scores the checks it meets
instructions
must not match: (?i)as an ai
fewer than 120 words"""
COLUMNS = ["judge", "kind", "state", "checks or model", "sets ranked", "abstained", "coverage", "agreement with people", "human rankings saved (estimate)", "added by"]  # fmt: skip


def judge_table(engine) -> list[list]:
    with Session(engine) as session:
        rows = list_judges(session=session)
        worth = judge_worth(session=session)
    return [judge_row(r, worth.get(r.user_id)) for r in rows]


def worth_text(worth: JudgeWorth | None) -> str:
    if worth is None:
        return "no set shared with people yet"
    return f"{worth.saved:.0f} (accuracy {worth.accuracy:.0%}, people {worth.people_accuracy:.0%})"


def prompts_text(engine) -> str:
    """Every model judge's comparison prompt as it asks it now, with its version (plain text: shown as written)."""
    with Session(engine) as session:
        rows = [r for r in list_judges(session=session) if r.kind == "model"]
    return "\n\n".join(
        f"{r.name} asks {r.model}, comparison prompt v{r.template_version}:\n{r.template}" for r in rows
    )


def suggestion_text(engine) -> str:
    """How labelers met the suggestions so far, in one paragraph."""
    with Session(engine) as session:
        st = suggestion_stats(session=session)
    if not st.shown and not st.held_back:
        return "No set ranked with a suggestion on screen, or held back, yet."
    show = lambda x: "n/a" if x is None else f"{x:.0%}"  # noqa: E731
    return (
        f"Suggestions shown with {st.shown} rankings: {st.accepted} accepted as they were, {st.changed} changed. "
        f"Agreement with the judge's order: {show(st.agreement_shown)} with the suggestion on screen, "
        f"{show(st.agreement_held_back)} without ({st.held_back} rankings); a gap is anchoring."
    )


def judge_row(r: JudgeRow, worth: JudgeWorth | None = None) -> list:
    state = "disabled" if r.disabled else "enabled"
    coverage = "" if r.coverage is None else f"{r.coverage:.0%}"
    agreement = "no shared pairs yet" if r.agreement is None else f"{r.agreement:.0%} of {r.compared} pairs"
    return [
        r.name,
        r.kind,
        state,
        "; ".join(r.checks) if r.kind == "rules" else f"{r.model}, prompt v{r.template_version}",
        r.ranked,
        r.abstained,
        coverage,
        agreement,
        worth_text(worth),
        r.created_by,
    ]


def build_judges_tab(deps: UIDeps) -> TabLoad:
    engine = deps.engine
    with gr.Tab("Judges"):
        gr.Markdown(
            "A judge ranks sets beside the labelers, under its own name: a **rule judge** scores each answer by "
            "the checks below that it meets and ranks the set by score (equal scores tied); it abstains where no "
            "check applies. Checks: `must match: REGEX`, `must not match: REGEX`, `fewer than N words`, "
            "`at least N words`, `starts with: TEXT`, `ends with: TEXT`, `all lowercase`, `all capitals`, "
            "`instructions` (the prompt's verifiable instructions). A judge's checks are fixed once added: add "
            "a new judge to change them. Judges never take a labeler's set and spend no human minutes. "
            "*Coverage*: the share of the sets it looked at that it ranked; *agreement with people*: the share "
            "of answer pairs that it and a person both ordered on which they agree. With reliability weights "
            "(reward training, export), a judge weighs by its estimated accuracy, and one below chance counts for "
            "nothing. A **model judge** asks a causal LM (`base`: the policy's base with its adapters off; or "
            "a local path) the comparison prompt below for every pair of a set's answers, in both orders, and "
            "ranks the set by the pairs each answer wins (docs/constitution.md); it abstains where all win alike. "
            "*Human rankings saved*: the reliability model's estimate of what its rankings are worth in human "
            "ones, its rankings x (2 accuracy - 1)^2 / (2 people's accuracy - 1)^2 on the sets both ranked."
        )
        with gr.Row():
            name = gr.Textbox(label="Judge name", max_lines=1)
            kind = gr.Radio(["rules", "model"], value="rules", label="Kind")
            add = gr.Button("Add judge", scale=0)
        rules = gr.Textbox(label="Rule judge: checks, one a line", lines=6, value=EXAMPLE)
        with gr.Row():
            model = gr.Textbox(label="Model judge: model", value=BASE, max_lines=1)
        template = gr.Textbox(
            label="Model judge: comparison prompt ({principles} {prompt} {first} {second})",
            lines=8,
            value=default_comparison_prompt(),
        )
        table = gr.Dataframe(headers=COLUMNS, interactive=False, wrap=True)
        with gr.Row():
            pick = gr.Textbox(label="Judge", max_lines=1)
            disable = gr.Button("Disable", scale=0)
            enable = gr.Button("Enable", scale=0)
            new_prompt = gr.Button("Save the prompt above as its next version", scale=0)
        prompts = gr.Textbox(label="Model judges' prompts, as they ask them now", lines=6, interactive=False)
        gr.Markdown(
            "**Suggestions on the labeling page**: where the judge below has ranked a set, the page shows its "
            "order and labelers accept it with one key (A) or rank their own. The rest of those sets are shown "
            "without it, so the page can tell whether suggestions move labels (anchoring)."
        )
        with gr.Row():
            suggest_judge = gr.Textbox(label="Suggesting judge (empty: off)", max_lines=1)
            suggest_share = gr.Slider(
                0, 1, step=0.05, value=0.5, label="Share of those sets shown the suggestion"
            )
            save_suggest = gr.Button("Save suggestions", scale=0)
        suggest_md = gr.Markdown(elem_id="suggestion-stats")
        status = gr.Markdown(elem_id="judges-status")

    def on_load(request: gr.Request):
        require_admin(engine, request)
        with Session(engine) as session:
            chosen = suggestions(session=session)
        return (
            judge_table(engine),
            prompts_text(engine),
            chosen.judge or "",
            chosen.share,
            suggestion_text(engine),
        )

    def on_suggest(request: gr.Request, judge: str, share: float):
        require_admin(engine, request)
        try:
            with Session(engine) as session:
                chosen = set_suggestions(
                    session=session, judge=(judge or "").strip() or None, share=float(share)
                )
        except ValueError as exc:
            raise gr.Error(f"Not saved: {exc}") from exc
        said = (
            f"The labeling page suggests **{chosen.judge}**'s ranking on {chosen.share:.0%} of the sets it ranked."
            if chosen.judge
            else "Suggestions are off."
        )
        return said, suggestion_text(engine)

    def on_add(request: gr.Request, judge: str, which: str, checks: str, asked: str, prompt: str):
        admin = require_admin(engine, request)
        config = {"rules": checks or ""} if which == "rules" else {"model": asked, "template": prompt}
        try:
            with Session(engine) as session:
                add_judge(session=session, name=judge or "", kind=which, config=config, created_by=admin.name)
        except (UserError, ValueError) as exc:  # RulesError and a prompt it cannot fill are ValueErrors
            raise gr.Error(f"Not added: {exc}") from exc
        said = f"Added {'rule' if which == 'rules' else 'model'} judge **{judge.strip()}**; it ranks waiting sets as the generator runs."  # fmt: skip
        return said, judge_table(engine), prompts_text(engine)

    def on_new_prompt(request: gr.Request, judge: str, prompt: str):
        require_admin(engine, request)
        try:
            with Session(engine) as session:
                version = set_judge_template(
                    session=session, name=(judge or "").strip(), template=prompt or ""
                )
        except (UserError, ValueError) as exc:
            raise gr.Error(f"Not saved: {exc}") from exc
        said = f"Judge **{judge.strip()}** asks with comparison prompt v{version} from now on."
        return said, judge_table(engine), prompts_text(engine)

    def switch(disabled: bool):
        def handler(request: gr.Request, judge: str):
            require_admin(engine, request)
            try:
                with Session(engine) as session:
                    set_judge_disabled(session=session, name=(judge or "").strip(), disabled=disabled)
            except UserError as exc:
                raise gr.Error(str(exc)) from exc
            return f"Judge **{judge.strip()}** {'disabled' if disabled else 'enabled'}.", judge_table(engine)

        return handler

    add.click(
        on_add, [name, kind, rules, model, template], [status, table, prompts], api_name="admin_add_judge"
    )
    new_prompt.click(on_new_prompt, [pick, template], [status, table, prompts], api_name="admin_judge_prompt")
    save_suggest.click(
        on_suggest, [suggest_judge, suggest_share], [status, suggest_md], api_name="admin_suggestions"
    )
    disable.click(switch(True), [pick], [status, table], api_name="admin_disable_judge")
    enable.click(switch(False), [pick], [status, table], api_name="admin_enable_judge")
    return TabLoad(on_load, [table, prompts, suggest_judge, suggest_share, suggest_md])
