"""Export preference data: TRL's conversational prompt/chosen/rejected format (plus margin, labeler count,
agreement, policy version, set id) as a `datasets` folder, Parquet or JSONL; a raw rankings export that keeps
ties, flags and per-labeler orders; and a dataset card with counts, agreement and the conversion settings.

    rankloop export --format parquet --out runs/exports/prefs [--keep-ties] [--flagged reject] [--raw]

This module sits above `rlhf` (it uses the pure pairs conversion), below the UI.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlmodel import Session, col, select

from labeler.labels.browse import last_user_turn
from labeler.labels.consensus import Agreement, agreement
from labeler.labels.conversations import conversation_turns
from labeler.labels.costs import RoundCost, round_costs
from labeler.labels.dataset import (
    BestAnswer,
    PreferenceRecord,
    best_answers,
    load_set_rankings,
    preference_records,
)
from labeler.labels.gold import fit_with_gold
from labeler.labels.judges import judge_ids
from labeler.labels.pairs import PairSettings
from labeler.labels.stats import human_time
from labeler.store.tables import Assignment, Completion, CompletionSet, Prompt, Ranking, User, id_of
from labeler.store.users import user_names

if TYPE_CHECKING:
    from datasets import Dataset

ExportFormat = Literal["parquet", "jsonl", "hf"]
LabelerWeights = Literal["equal", "reliability"]
EXPORT_FORMATS: tuple[str, ...] = ("parquet", "jsonl", "hf")


@dataclass
class ExportResult:
    paths: list[Path]
    pairs: int
    sets: int
    settings: dict
    agreement: Agreement | None = None
    counts: dict = field(default_factory=dict)
    rounds: list[RoundCost] = field(default_factory=list)
    preview: list[dict] = field(
        default_factory=list
    )  # the first rows as written: prompt, chosen, rejected, ...
    by_agreement: dict[str, int] = field(default_factory=dict)  # pairs per agreement level
    sft: int = 0  # best answers written for SFT (labelers' edits, answers every labeler ranked first)


def agreement_level(agreement: float, voters: int) -> str:
    """The pair's agreement as a word: one labeler, unanimous, or a majority."""
    if voters <= 1:
        return "one labeler"
    return "unanimous" if agreement >= 0.999 else "majority"


def preview_rows(records: list[PreferenceRecord], rows: int = 5) -> list[dict]:
    """The first `rows` records as the admin's preview shows them (texts cut to 200 characters)."""
    return [
        {
            "prompt": last_user_turn(r.prompt)[:200],
            "chosen": r.chosen[:200],
            "rejected": r.rejected[:200],
            "agreement": round(r.agreement, 3),
            "labelers": r.num_labelers,
            "split": r.split,
        }
        for r in records[:rows]
    ]


def _cost_lines(rounds: list[RoundCost]) -> list[str]:
    """The card's table of what each training round's labels cost and bought (labeler/labels/costs.py)."""
    if not rounds:
        return []
    show = lambda x: "n/a" if x is None else f"{x:g}"  # noqa: E731
    lines = [
        "## What the labels cost and bought, per training round",
        "",
        "| round | made version | new labels | human minutes | reward model accuracy | labels per accuracy point "
        "| human win-rate vs parent | labels per win-rate point |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rounds:
        lines.append(
            f"| {c.round_id} | {show(c.version)} | {c.new_labels} | {c.human_minutes:g} | {show(c.reward_accuracy)} "
            f"| {show(c.labels_per_accuracy_point)} | {show(c.win_rate)} | {show(c.labels_per_win_point)} |"
        )
    return [*lines, ""]


def _arrow_table(
    records: list[PreferenceRecord],
    names: dict[int, str],
    judges: set[int],
    turns: dict[int, tuple[int, int]] | None = None,
):
    """Columns built directly (much faster than row dicts for hundreds of thousands of pairs); `turns`: each
    prompt's (conversation id, turn)."""
    turns = turns or {}
    import pyarrow as pa

    as_json = lambda value: None if value is None else json.dumps(value, sort_keys=True)  # noqa: E731

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    turn = lambda text: [{"role": "assistant", "content": text}]  # noqa: E731
    columns = {
        "prompt": pa.array([r.prompt for r in records], pa.list_(message)),
        "chosen": pa.array([turn(r.chosen) for r in records], pa.list_(message)),
        "rejected": pa.array([turn(r.rejected) for r in records], pa.list_(message)),
        "margin": pa.array([r.margin for r in records], pa.float64()),
        "num_labelers": pa.array([r.num_labelers for r in records], pa.int64()),
        "agreement": pa.array([r.agreement for r in records], pa.float64()),
        "policy_version": pa.array([r.policy_version for r in records], pa.int64()),
        "set_id": pa.array([r.set_id for r in records], pa.int64()),
        "conversation_id": pa.array(
            [turns.get(r.prompt_id, (r.prompt_id, 1))[0] for r in records], pa.int64()
        ),
        "turn": pa.array([turns.get(r.prompt_id, (r.prompt_id, 1))[1] for r in records], pa.int64()),
        "origin": pa.array([r.origin for r in records], pa.string()),
        "chosen_origin": pa.array([r.chosen_origin for r in records], pa.string()),
        "rejected_origin": pa.array([r.rejected_origin for r in records], pa.string()),
        "labelers": pa.array(
            [[names.get(u, str(u)) for u in r.labelers] for r in records], pa.list_(pa.string())
        ),
        "judges": pa.array(
            [[names.get(u, str(u)) for u in r.labelers if u in judges] for r in records],
            pa.list_(pa.string()),
        ),
        "consensus": pa.array([r.consensus for r in records], pa.string()),
        "weight": pa.array([r.weight for r in records], pa.float64()),
        "sampling": pa.array([as_json(r.sampling) for r in records], pa.string()),
        "selection": pa.array([as_json(r.selection) for r in records], pa.string()),
    }
    return pa.table(columns)


def _write_dataset(
    records: list[PreferenceRecord],
    names: dict[int, str],
    judges: set[int],
    out: Path,
    fmt: ExportFormat,
    push_to_hub: str | None,
    turns: dict[int, tuple[int, int]] | None = None,
) -> list[Path]:
    from datasets import Dataset

    data = Dataset(_arrow_table(records, names, judges, turns))
    out.mkdir(parents=True, exist_ok=True)
    path = _save(data, out, "preferences", fmt, folder="dataset")
    if push_to_hub:
        data.push_to_hub(push_to_hub)
    return [path]


def _save(data: Dataset, out: Path, stem: str, fmt: ExportFormat, folder: str) -> Path:
    """`data` as `<stem>.parquet`, `<stem>.jsonl`, or a datasets folder named `folder` under `out`."""
    if fmt == "parquet":
        path = out / f"{stem}.parquet"
        data.to_parquet(str(path))
    elif fmt == "jsonl":
        path = out / f"{stem}.jsonl"
        data.to_json(str(path), lines=True, force_ascii=False)
    else:
        path = out / folder
        data.save_to_disk(str(path))
    return path


def _write_sft(answers: list[BestAnswer], names: dict[int, str], out: Path, fmt: ExportFormat) -> Path:
    """The best answers in TRL's conversational prompt-completion format (`prompt`, `completion`), with why each
    was kept, in the pairs' format: `sft.parquet`, `sft.jsonl` or the `sft` datasets folder."""
    from datasets import Dataset

    rows = [
        {
            "prompt": a.prompt,
            "completion": [{"role": "assistant", "content": a.completion}],
            "why": a.why,
            "origin": a.origin,
            "set_id": a.set_id,
            "labelers": [names.get(u, str(u)) for u in a.labelers],
        }
        for a in answers
    ]
    empty: dict[str, list] = {k: [] for k in ("prompt", "completion", "why", "origin", "set_id", "labelers")}
    data = Dataset.from_list(rows) if rows else Dataset.from_dict(empty)
    return _save(data, out, "sft", fmt, folder="sft")


def _card(result: ExportResult, fmt: str) -> str:
    a = result.agreement
    alpha = "n/a" if a is None or a.alpha is None else f"{a.alpha:.3f}"
    lines = [
        "---",
        "tags: [rlhf, preference, rankloop]",
        "---",
        "# rankloop preference export",
        "",
        "Pairwise preferences from human rankings, in TRL's conversational format (`prompt`, `chosen`, `rejected`),",
        "with `margin` (rank difference), `num_labelers`, `agreement` (winning share of votes, or under reliability",
        "weights the posterior that `chosen` wins), `policy_version`, `set_id`, `origin` (`generated` = ranked in",
        "rankloop, `imported` = imported pairs) and each pair's provenance: `labelers` (who ranked the set),",
        "`judges` (those of them that are programs: rule and model judges, labeler/labels/judges.py),",
        "`conversation_id` and `turn` (a conversation's first prompt id, and which user turn the pair answers: the",
        "whole history up to it is the `prompt`),",
        "`consensus` (`majority` or `reliability`), `weight` (1, or 2P - 1 under reliability weights), `sampling`",
        "(the generation settings, JSON) and `selection` (how the set was chosen for labeling, JSON).",
        "`chosen_origin` and `rejected_origin` say who wrote each answer: `generated` by the policy, `edit` by a",
        "labeler who rewrote an answer (or wrote one), ranked just above the answer it came from.",
        "",
        "The `sft` file holds the best answers in TRL's prompt-completion format (`prompt`, `completion`): labelers'",
        "edits and the answers every labeler of their set ranked first, with `why`, `origin` and `labelers`.",
        "",
        f"- format: {fmt}",
        f"- pairs: {result.pairs}",
        f"- best answers (SFT): {result.sft}",
        f"- sets with pairs: {result.sets}",
        *(f"- {k}: {v}" for k, v in result.counts.items()),
        f"- consensus: {result.settings.get('weights', 'equal')} weights",
        f"- Krippendorff's alpha (ordinal, sets with 2+ rankings): {alpha} over {a.sets if a else 0} sets",
        "",
        *_cost_lines(result.rounds),
        "## Conversion settings",
        "",
        "```json",
        json.dumps(result.settings, indent=2),
        "```",
    ]
    return "\n".join(lines) + "\n"


def export_preferences(
    *,
    session: Session,
    out: Path,
    fmt: ExportFormat = "parquet",
    settings: PairSettings = PairSettings(),
    origins: list[str] | None = None,
    push_to_hub: str | None = None,
    weights: LabelerWeights = "equal",
) -> ExportResult:
    """Write the consensus pairs, a dataset card (README.md) and the settings (export.json) into `out`. Gold sets
    (copies of ranked sets that score labelers) are left out. `weights="reliability"` decides each pair by the
    reliability-weighted votes (labeler/labels/reliability.py, gold answers clamped) and weighs it 2P - 1."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if weights not in ("equal", "reliability"):
        raise ValueError(f"unknown labeler weights {weights!r}; use equal or reliability")
    every = load_set_rankings(session=session)
    fit = (
        fit_with_gold(session=session, sets=every, flagged=settings.flagged)
        if weights == "reliability"
        else None
    )
    sets = [s for s in every if s.origin != "gold" and (origins is None or s.origin in origins)]
    records = preference_records(session=session, settings=settings, sets=sets, reliability=fit)
    best = best_answers(session=session, sets=sets)
    names, judges = user_names(session=session), judge_ids(session=session)
    turns = conversation_turns(session=session, prompt_ids={r.prompt_id for r in records})
    cost = human_time(session=session, set_ids=[s.set_id for s in sets])
    result = ExportResult(
        paths=[],
        pairs=len(records),
        sets=len({r.set_id for r in records}),
        settings={"pairs": settings.to_dict(), "origins": origins, "weights": weights},
        agreement=agreement([s.rankings for s in sets], settings),
        counts={"rankings": sum(len(s.rankings) for s in sets), "ranked sets": len(sets), **cost.card()},
        rounds=round_costs(session=session),
        preview=preview_rows(records),
        by_agreement=dict(Counter(agreement_level(r.agreement, r.num_labelers) for r in records)),
    )
    _end_reads(session)
    out = Path(out)
    result.paths = _write_dataset(records, names, judges, out, fmt, push_to_hub, turns)
    result.paths.append(_write_sft(best, names, out, fmt))
    result.sft = len(best)
    (out / "README.md").write_text(_card(result, fmt))
    (out / "export.json").write_text(
        json.dumps({**result.settings, "pairs": result.pairs, "format": fmt}, indent=2)
    )
    result.paths += [out / "README.md", out / "export.json"]
    return result


def export_raw_rankings(*, session: Session, out: Path) -> Path:
    """Every ranking as one JSONL line: prompt, completions, labeler, display order, ranks (ties kept), flags."""
    users = dict(session.exec(select(User.id, User.name)).all())
    orders: dict[tuple[int, int | None], list[int]] = {
        (a.set_id, a.user_id): a.display_order for a in session.exec(select(Assignment))
    }
    sets = {c.id: c for c in session.exec(select(CompletionSet))}
    prompts = dict(session.exec(select(Prompt.id, Prompt.messages)).all())
    completions: dict[int, list[dict]] = {}
    for c in session.exec(select(Completion).order_by(col(Completion.set_id), col(Completion.position))):
        completions.setdefault(c.set_id, []).append(
            {
                "id": c.id,
                "text": c.text,
                "policy_version_id": c.policy_version_id,
                "finish_reason": c.finish_reason,
                "origin": c.origin,
                **(
                    {"author": users.get(c.author_id), "source_id": c.source_id} if c.origin == "edit" else {}
                ),
            }
        )
    lines = []
    for ranking in session.exec(select(Ranking).order_by(col(Ranking.id))):
        cset = sets[ranking.set_id]
        lines.append(
            {
                "set_id": cset.id,
                "origin": cset.origin,
                "prompt": prompts[cset.prompt_id],
                "completions": completions.get(id_of(cset), []),
                "labeler": users.get(ranking.user_id),
                "display_order": orders.get((id_of(cset), ranking.user_id)),
                "ranks": ranking.ranks,
                "flags": ranking.flags,
                "none_acceptable": ranking.none_acceptable,
                "skipped": ranking.skipped,
                "comment": ranking.comment,
                "seconds_spent": ranking.seconds_spent,
                "guidelines_version": ranking.guidelines_version,
                "created_at": ranking.created_at.isoformat(),
            }
        )
    _end_reads(session)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "rankings.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    return path


def _end_reads(session: Session) -> None:
    """End the read transaction before any file is written (no file I/O inside a transaction)."""
    session.rollback()
