"""Command-line subcommands over the store: import, export, user, API tokens, webhooks. Registered by `app.py`.

rankloop import prompts data/prompts.jsonl --eval-fraction 0.1
rankloop import pairs ../shared/data/hh-rlhf-harmless-test-part-a.jsonl.gz
rankloop export --format parquet --out runs/exports/latest
rankloop user add alice --role labeler
rankloop gold mark 42 --ranks 2,1,3,4 ; rankloop gold rate 0.1 ; rankloop gold scores
rankloop selection --mode uncertainty --random-share 0.25 --oversample 8 --budget 128 ; rankloop selection
rankloop token add alice --name "survey tool" ; rankloop token list ; rankloop token revoke 3
rankloop webhook add https://ci.example/hook --event job.succeeded --event job.failed ; rankloop webhook list
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from sqlmodel import Session

from labeler.io.export import (
    EXPORT_FORMATS,
    ExportFormat,
    LabelerWeights,
    export_preferences,
    export_raw_rankings,
)
from labeler.io.formats import Source
from labeler.io.importers import import_pairs, import_prompts
from labeler.io.oasst import import_oasst
from labeler.labels.gold import mark_gold, named_scores, parse_ranks
from labeler.labels.pairs import PairSettings
from labeler.records.reward_models import selection_measure
from labeler.records.webhooks import EVENTS, add_webhook, recent_deliveries, set_webhook_active, webhooks
from labeler.store.api_tokens import create_token, list_tokens, revoke_token
from labeler.store.db import default_url, make_engine, read_session
from labeler.store.settings import selection, set_gold_rate, set_selection
from labeler.store.users import add_user, new_password, reset_password, set_disabled


def open_session(home: str, db: str | None) -> Session:
    return Session(make_engine(db or default_url(Path(home))))


def add_pair_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-ties", action="store_true", help="tied completions give pairs with margin 0")
    parser.add_argument(
        "--flagged", choices=["drop", "reject"], default="drop", help="what flagged completions become"
    )
    parser.add_argument(
        "--min-agreement", type=float, default=0.0, help="drop consensus pairs below this agreement"
    )


# Handlers take the parsed flags they need as keyword arguments (app.py passes them by name), never argparse's
# Namespace, so the type checker sees every flag a handler reads.


def column_map(pairs: list[str] | None) -> dict[str, str]:
    """`FIELD=COLUMN` flags as {field: column}; ValueError for one without `=`."""
    out = {}
    for item in pairs or []:
        name, sep, column = item.partition("=")
        if not sep or not name or not column:
            raise ValueError(f"--column {item!r}: write FIELD=COLUMN, for instance prompt=question")
        out[name] = column
    return out


def _import(
    *,
    home: str,
    db: str | None,
    kind: str,
    file: str,
    eval_fraction: float,
    split: str,
    column: list[str] | None,
) -> int:
    source = Source(split=split, columns=column_map(column))
    with open_session(home, db) as session:
        if kind == "prompts":
            done = import_prompts(
                session=session, path=Path(file), eval_fraction=eval_fraction, source=source
            )
            print(f"imported {done.added} new prompts from {file} ({done.already_present} already present)")
        elif kind == "oasst":
            trees = import_oasst(session=session, path=Path(file))
            print(
                f"imported {trees.prompts} new prompts and {trees.pairs.added} pairs from {file} "
                f"({trees.pairs.already_present} pairs already present)"
            )
        else:
            result = import_pairs(session=session, path=Path(file), source=source)
            print(f"imported {result.added} pairs from {file} ({result.already_present} already present)")
    return 0


def _export(
    *,
    home: str,
    db: str | None,
    out: str | None,
    origin: str,
    format: ExportFormat,
    raw: bool,
    push_to_hub: str | None,
    keep_ties: bool,
    flagged: Literal["drop", "reject"],
    min_agreement: float,
    weights: LabelerWeights,
) -> int:
    folder = Path(out) if out else Path(home) / "exports" / "latest"
    settings = PairSettings(keep_ties=keep_ties, flagged=flagged, min_agreement=min_agreement)
    with read_session(make_engine(db or default_url(Path(home)))) as session:  # reads only
        result = export_preferences(
            session=session,
            out=folder,
            fmt=format,
            settings=settings,
            origins=None if origin == "all" else [origin],
            push_to_hub=push_to_hub,
            weights=weights,
        )
        print(f"exported {result.pairs} pairs from {result.sets} sets to {result.paths[0]}")
        print(
            f"and {result.sft} best answers for SFT (edits, answers every labeler ranked first) to {result.paths[1]}"
        )
        if raw:
            print(f"raw rankings: {export_raw_rankings(session=session, out=folder)}")
    return 0


def _user(*, home: str, db: str | None, action: str, name: str, role: str, password: str | None) -> int:
    with open_session(home, db) as session:
        if action == "add":
            chosen = password or new_password()
            user = add_user(session=session, name=name, password=chosen, role=role)
            print(f"added {user.role} {user.name!r}" + ("" if password else f" with password: {chosen}"))
        elif action in ("disable", "enable"):
            set_disabled(session=session, name=name, disabled=action == "disable")
            print(f"{action}d {name!r}")
        else:
            print(
                f"new password for {name!r}: {reset_password(session=session, name=name, password=password)}"
            )
    return 0


def _token(*, home: str, db: str | None, action: str, value: str | None, name: str) -> int:
    with open_session(home, db) as session:
        if action == "add":
            if not value:
                raise ValueError(
                    "token add needs the user's name: rankloop token add ana --name 'survey tool'"
                )
            made = create_token(session=session, user=value, name=name, by="cli")
            print(f"token {made.token_id} for {value!r} (shown once; keep it secret):\n{made.secret}")
        elif action == "revoke":
            if value is None or not value.isdigit():
                raise ValueError("token revoke needs the token's number (see `rankloop token list`)")
            revoke_token(session=session, token_id=int(value))
            print(f"revoked token {value}")
        else:
            for t in list_tokens(session=session, user=value):
                state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
                used = f"last used {t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never used"
                print(
                    f"{t.id}: {t.prefix}... {t.user} ({t.role}) {t.name!r}, {state}, {t.uses} calls, {used}"
                )
    return 0


def _webhook(
    *, home: str, db: str | None, action: str, value: str | None, events: list[str] | None, every: int
) -> int:
    with open_session(home, db) as session:
        if action == "add":
            hook, secret = add_webhook(
                session=session, url=value or "", events=events or [], by="cli", every=every
            )
            print(
                f"webhook {hook.id} -> {hook.url} for {', '.join(hook.events)}; signing secret (shown once):"
            )
            print(secret)
        elif action in ("disable", "enable"):
            if value is None or not value.isdigit():
                raise ValueError(f"webhook {action} needs the hook's number (see `rankloop webhook list`)")
            set_webhook_active(session=session, hook_id=int(value), active=action == "enable")
            print(f"{action}d webhook {value}")
        else:
            for hook in webhooks(session=session):
                state = "active" if hook.active else "disabled"
                print(f"{hook.id}: {hook.url} ({state}) {', '.join(hook.events)}")
                for d in reversed(recent_deliveries(session=session, hook_id=hook.id, limit=5)):
                    print(
                        f"  {d.id} {d.event}: {d.status} after {d.attempts} tries ({d.response_code or d.error})"
                    )
    return 0


def _gold(
    *,
    home: str,
    db: str | None,
    action: str,
    value: str | None,
    ranks: str | None,
    flag: list[int] | None,
    from_consensus: bool,
) -> int:
    with open_session(home, db) as session:
        if action == "mark":
            if value is None or not value.isdigit():
                raise ValueError("gold mark needs the set's id: rankloop gold mark SET_ID --ranks 2,1,3,4")
            known = parse_ranks(ranks) if ranks else None
            gold = mark_gold(
                session=session,
                set_id=int(value),
                ranks=known,
                flagged=flag or [],
                from_consensus=from_consensus,
            )
            print(f"gold set {gold.id} (a copy of set {value}): {gold.gold}")
        elif action == "rate":
            try:
                rate = float(value or "")
            except ValueError:
                raise ValueError("gold rate needs a share of leases: rankloop gold rate 0.1") from None
            set_gold_rate(session=session, rate=rate)
            print(
                f"gold rate {rate}: about one lease in {round(1 / rate) if rate else 'never'} gives a gold set"
            )
        else:
            for name, score in named_scores(session=session):
                tau = "n/a" if score.mean_tau is None else f"{score.mean_tau:.3f}"
                flags = "n/a" if score.flags_caught is None else f"{score.flags_caught:.2f}"
                print(f"{name:20s} gold sets {score.sets:4d}  mean tau {tau}  flags caught {flags}")
    return 0


def _selection(
    *,
    home: str,
    db: str | None,
    mode: str | None,
    random_share: float | None,
    oversample: int | None,
    budget: int | None,
) -> int:
    changes = {
        k: v
        for k, v in {
            "mode": mode,
            "random_share": random_share,
            "oversample": oversample,
            "budget": budget,
        }.items()
        if v is not None
    }
    with open_session(home, db) as session:
        chosen = set_selection(session=session, **changes) if changes else selection(session=session)
        measure = selection_measure(session=session)
    budget_text = f"at most {chosen.budget} sets per policy version" if chosen.budget else "no budget"
    if chosen.mode == "uncertainty":
        print(
            f"selection by uncertainty: {chosen.oversample} candidates per kept set, the latest reward model's "
            f"most uncertain kept, {chosen.random_share:.0%} at random; {budget_text}\n{measure}"
        )
    else:
        print(f"selection random: every generated set is kept; {budget_text}")
    return 0


def register(add) -> None:
    """Add the store subcommands; `add(name, help)` returns a subparser with the common options."""
    imp = add("import", "import prompts or preference pairs (JSONL[.gz], CSV, TXT, Parquet, datasets folder)")
    imp.add_argument("kind", choices=["prompts", "pairs", "oasst"], help="oasst: OpenAssistant-style trees")
    imp.add_argument(
        "file", help="a file, a datasets folder, or a dataset's name (owner/name: datasets.load_dataset)"
    )
    imp.add_argument(
        "--split", default="train", help="a dataset's split to read (a name or a dataset's files)"
    )
    imp.add_argument(
        "--column",
        action="append",
        metavar="FIELD=COLUMN",
        help="read FIELD (prompt, chosen, rejected, ...) from COLUMN of the data; repeat for more",
    )
    imp.add_argument(
        "--eval-fraction", type=float, default=0.0, help="share of new prompts put in the eval split"
    )
    imp.set_defaults(func=_import)

    exp = add(
        "export", "export preference pairs in TRL's format, a dataset card, and optionally raw rankings"
    )
    exp.add_argument("--format", choices=EXPORT_FORMATS, default="parquet")
    exp.add_argument("--out", help="output folder (default HOME/exports/latest)")
    exp.add_argument("--origin", choices=["all", "generated", "imported"], default="all")
    exp.add_argument(
        "--raw", action="store_true", help="also write rankings.jsonl (ties, flags, per-labeler orders)"
    )
    exp.add_argument(
        "--push-to-hub", metavar="REPO_ID", help="also push to the Hugging Face Hub (needs a hub)"
    )
    exp.add_argument(
        "--weights",
        choices=["equal", "reliability"],
        default="equal",
        help="consensus per pair: every vote once, or votes weighted by labeler reliability (weight 2P-1)",
    )
    add_pair_settings_args(exp)
    exp.set_defaults(func=_export)

    user = add("user", "add, disable, enable or reset a user")
    user.add_argument("action", choices=["add", "disable", "enable", "reset"])
    user.add_argument("name")
    user.add_argument("--role", choices=["labeler", "admin"], default="labeler")
    user.add_argument("--password", help="default: a random password, printed once")
    user.set_defaults(func=_user)

    token = add("token", "personal API tokens: add USER [--name], list [USER], revoke ID (docs/api.md)")
    token.add_argument("action", choices=["add", "list", "revoke"])
    token.add_argument("value", nargs="?", help="add: the user; list: a user (default all); revoke: the id")
    token.add_argument("--name", default="", help="add: what the token is for")
    token.set_defaults(func=_token)

    hook = add("webhook", "webhooks: add URL --event E [--event F], list, disable ID, enable ID")
    hook.add_argument("action", choices=["add", "list", "disable", "enable"])
    hook.add_argument("value", nargs="?", help="add: the URL; disable/enable: the hook's id")
    hook.add_argument(
        "--event", dest="events", action="append", choices=sorted(EVENTS), help="repeat for more"
    )
    hook.add_argument("--every", type=int, default=100, help="rankings.new: every this many new rankings")
    hook.set_defaults(func=_webhook)

    gold = add("gold", "gold sets with a known answer, mixed into labelers' queues to score them")
    gold.add_argument("action", choices=["mark", "rate", "scores"])
    gold.add_argument(
        "value", nargs="?", help="mark: the id of the set to copy; rate: a share of leases, 0-0.5"
    )
    gold.add_argument("--ranks", help="mark: the known rank of each answer by position, e.g. 2,1,3,4")
    gold.add_argument("--flag", type=int, action="append", help="mark: a known-flagged answer's position")
    gold.add_argument(
        "--from-consensus", action="store_true", help="mark: the set's merged ranking is the known answer"
    )
    gold.set_defaults(func=_gold)

    sel = add("selection", "what the generator keeps for labelers: random, or the reward model's doubt")
    sel.add_argument("--mode", choices=["random", "uncertainty"])
    sel.add_argument("--random-share", type=float, help="uncertainty: share of kept sets picked at random")
    sel.add_argument(
        "--oversample", type=int, help="uncertainty: candidate sets generated per kept set (1-8)"
    )
    sel.add_argument("--budget", type=int, help="sets per policy version, 0 for no limit")
    sel.set_defaults(func=_selection)
