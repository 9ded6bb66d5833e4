"""Judges: labeler accounts that are programs. A rule judge ranks each generated set by the checks an admin wrote
(labeler/labels/rules.py); a model judge asks a causal LM (the policy's base, or another local model) which of two
answers better follows the constitution, for every pair in both orders, and ranks the set by wins. Either stores
its ranking like a labeler's, under its own account (role `judge`), so every reader of rankings sees who ranked
what. A judge never leases a set, never logs in, spends no human minutes and
does not count toward a set's labels needed: humans label as they would without it. Where none of its checks
applies it abstains (stored as its skip, so it does not look at the set again).

    rankloop judge add house-style --rules rules.txt
    rankloop judge add self-judge --model base       # the comparison prompt of docs/constitution.md
    rankloop judge list
    rankloop judge run            # label every waiting set now (the generator also does it as it goes)
    rankloop judge disable house-style

Judging reads in one short transaction, ranks outside any, and writes each set's ranking in its own. A model
judge needs a model to ask: the caller passes `compare` (rlhf/serve/model_judges.py); without one its sets wait.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from labeler.labels.consensus import concordance
from labeler.labels.instructions import Instruction
from labeler.labels.model_judge import Compare, check_comparison_prompt, comparison_questions, rank_by_wins
from labeler.labels.rules import Rule, parse_rules, rank_by_rules
from labeler.store.constitution import current_constitution, default_comparison_prompt
from labeler.store.db import read_session
from labeler.store.store import last_user_message
from labeler.store.tables import (
    JUDGE_ROLE,
    Completion,
    CompletionSet,
    Judge,
    Prompt,
    Ranking,
    User,
    id_of,
)
from labeler.store.users import UserError, get_user, hash_password, new_account

logger = logging.getLogger(__name__)
JUDGE_KINDS = ("rules", "model")
BATCH = 64  # sets a rule judge ranks per pass
MODEL_BATCH = 8  # ... a model judge (12 model calls a set of 4): the generator's step stays short
BASE = "base"  # a model judge's model: the policy's base with the adapters off


@dataclass(frozen=True)
class JudgeRow:
    name: str
    kind: str
    disabled: bool
    checks: list[str]  # its rules, as written back
    ranked: int  # sets it ranked
    abstained: int  # sets where none of its checks applied
    created_by: str
    user_id: int = 0
    model: str | None = None  # a model judge's model
    template: str | None = None  # ... and the comparison prompt it asks with
    template_version: int | None = None
    agreed: int = 0  # answer pairs a person ordered the same way as the judge (sets both ranked)
    compared: int = 0  # answer pairs both the judge and a person ordered strictly

    @property
    def coverage(self) -> float | None:
        """Share of the sets it looked at that it ranked rather than abstained on."""
        seen = self.ranked + self.abstained
        return self.ranked / seen if seen else None

    @property
    def agreement(self) -> float | None:
        """Share of the strict pairs it shares with people on which it agrees with them."""
        return self.agreed / self.compared if self.compared else None


@dataclass(frozen=True)
class _Work:
    judge_user_id: int
    kind: str
    config: dict
    rules: list[Rule]  # a rule judge's checks, read once per judge (none for a model judge)
    set_id: int
    completion_ids: list[int]
    texts: list[str]
    instructions: list[Instruction]
    request: str  # the prompt's last user message (what a model judge is shown)


def add_judge(*, session: Session, name: str, kind: str, config: dict, created_by: str = "") -> Judge:
    """A new judge account; UserError for a taken name or an unknown kind, RulesError for rules it cannot read."""
    name = name.strip()
    if not name or len(name) > 64:
        raise UserError("a judge's name has 1-64 characters")
    if kind not in JUDGE_KINDS:
        raise UserError(f"unknown judge kind {kind!r}; use one of {', '.join(JUDGE_KINDS)}")
    config = _model_config(config) if kind == "model" else _rules_config(name, config)
    unusable = hash_password(secrets.token_urlsafe(32))  # no one knows it; log-in refuses judges anyway
    user = new_account(session=session, name=name, password_hash=unusable, role=JUDGE_ROLE)
    session.flush()
    judge = Judge(user_id=id_of(user), kind=kind, config=config, created_by=created_by)
    session.add(judge)
    session.commit()
    session.refresh(judge)
    return judge


def _rules_config(name: str, config: dict) -> dict:
    rules_text = str(config.get("rules", ""))
    parse_rules(rules_text, where=f"judge {name!r}'s rules")
    return {"rules": rules_text}


def _model_config(config: dict) -> dict:
    """A model judge's config: its model ('base', a local path or a Hub id) and comparison prompt (version 1);
    ValueError for a prompt it cannot fill."""
    model = str(config.get("model") or BASE).strip()
    template = str(config.get("template") or default_comparison_prompt())
    check_comparison_prompt(template)
    return {"model": BASE if model == "default" else model, "template": template, "template_version": 1}


def set_judge_template(*, session: Session, name: str, template: str) -> int:
    """A new version of a model judge's comparison prompt (for the sets it judges from now on); its number."""
    judge = _judge_named(session, name)
    if judge is None or judge.kind != "model":
        raise UserError(f"no model judge named {name!r}")
    check_comparison_prompt(template)
    version = int(judge.config.get("template_version", 1)) + 1
    judge.config = {**judge.config, "template": template, "template_version": version}
    session.add(judge)
    session.commit()
    return version


def _judge_named(session: Session, name: str) -> Judge | None:
    return session.exec(
        select(Judge).join(User, col(User.id) == col(Judge.user_id)).where(User.name == name)
    ).first()


def judge_rules(*, session: Session, name: str) -> list[Rule]:
    """The checks of the rule judge `name` (a rules reward for PPO); ValueError naming the judges there are."""
    found = _judge_named(session, name)
    if found is None or found.kind != "rules":
        known = ", ".join(r.name for r in list_judges(session=session) if r.kind == "rules") or "none yet"
        raise ValueError(f"no rule judge named {name!r} (rule judges: {known}; add one in Admin > Judges)")
    return parse_rules(found.config.get("rules", ""), where=f"judge {name!r}'s rules")


def pairs_agreeing(mine: dict[str, int], theirs: dict[str, int]) -> tuple[int, int]:
    """(pairs ordered the same way, pairs both order strictly) between two rankings of one set."""
    concordant, discordant, _, _ = concordance(mine, theirs)
    return concordant, concordant + discordant


def judge_ids(*, session: Session) -> set[int]:
    """The accounts that are judges (reports and exports mark them)."""
    return {i for i in session.exec(select(User.id).where(User.role == JUDGE_ROLE)).all() if i is not None}


def set_judge_disabled(*, session: Session, name: str, disabled: bool) -> None:
    user = get_user(session=session, name=name)
    if user is None or user.role != JUDGE_ROLE:
        raise UserError(f"no judge named {name!r}")
    user.disabled = disabled
    session.add(user)
    session.commit()


def list_judges(*, session: Session) -> list[JudgeRow]:
    """Every judge with its checks, how many sets it ranked and abstained on, and its agreement with people."""
    counted = session.exec(
        select(Ranking.user_id, Ranking.skipped, func.count())
        .join(Judge, col(Judge.user_id) == col(Ranking.user_id))
        .group_by(col(Ranking.user_id), col(Ranking.skipped))
    ).all()
    counts = {(user_id, skipped): n for user_id, skipped, n in counted}
    rows = session.exec(
        select(Judge, User).join(User, col(User.id) == col(Judge.user_id)).order_by(col(Judge.id))
    )
    shared = _agreement_with_people(session)
    return [
        JudgeRow(
            name=user.name,
            kind=judge.kind,
            disabled=user.disabled,
            checks=[r.describe() for r in _rules_of(judge, user.name)],
            ranked=counts.get((user.id, False), 0),
            abstained=counts.get((user.id, True), 0),
            created_by=judge.created_by,
            user_id=id_of(user),
            model=judge.config.get("model"),
            template=judge.config.get("template"),
            template_version=judge.config.get("template_version"),
            agreed=shared.get(id_of(user), (0, 0))[0],
            compared=shared.get(id_of(user), (0, 0))[1],
        )
        for judge, user in rows
    ]


def _agreement_with_people(session: Session) -> dict[int, tuple[int, int]]:
    """{judge's user id: (pairs agreed, pairs compared)} over the sets a judge and a person both ranked: every
    answer pair that both order strictly (a person's ties and flags cast no pair) counts once per person."""
    judged = (
        select(Ranking.set_id).join(User, col(User.id) == col(Ranking.user_id)).where(User.role == JUDGE_ROLE)
    )
    rows = session.exec(
        select(Ranking.set_id, Ranking.user_id, Ranking.ranks, User.role)
        .join(User, col(User.id) == col(Ranking.user_id))
        .where(col(Ranking.set_id).in_(judged), col(Ranking.skipped).is_(False))
    ).all()
    by_set: dict[int, list[tuple[int, dict[str, int], bool]]] = {}
    for set_id, user_id, ranks, role in rows:
        if user_id is not None:
            by_set.setdefault(set_id, []).append((user_id, dict(ranks or {}), role == JUDGE_ROLE))
    out: dict[int, tuple[int, int]] = {}
    for rankings in by_set.values():
        people = [ranks for _, ranks, is_judge in rankings if not is_judge]
        for judge_id, mine, is_judge in rankings:
            if not is_judge:
                continue
            agreed, compared = out.get(judge_id, (0, 0))
            for theirs in people:
                more = pairs_agreeing(mine, theirs)
                agreed, compared = agreed + more[0], compared + more[1]
            out[judge_id] = (agreed, compared)
    return out


def _waiting(session: Session, judge_user_id: int, limit: int) -> list[int]:
    """The newest generated sets this judge has not ranked (nor abstained on)."""
    done = select(Ranking.set_id).where(Ranking.user_id == judge_user_id)
    ids = session.exec(
        select(CompletionSet.id)
        .where(CompletionSet.origin == "generated", col(CompletionSet.id).not_in(done))
        .order_by(col(CompletionSet.id).desc())
        .limit(limit)
    ).all()
    return [i for i in ids if i is not None]


def _work(session: Session, limit: int, kinds: Sequence[str]) -> list[_Work]:
    """What every enabled judge of `kinds` has to rank: each waiting set's answers (labelers' edits left out:
    they are not shown to others), its prompt's instructions and last user message."""
    judges = session.exec(
        select(Judge, User)
        .join(User, col(User.id) == col(Judge.user_id))
        .where(col(User.disabled).is_(False), col(Judge.kind).in_(kinds))
    ).all()
    out = []
    for judge, user in judges:
        rules = _rules_of(judge, user.name)
        set_ids = _waiting(session, id_of(user), limit if judge.kind == "rules" else min(limit, MODEL_BATCH))
        if not set_ids:
            continue
        answers = session.exec(
            select(Completion.set_id, Completion.id, Completion.text)
            .where(col(Completion.set_id).in_(set_ids), Completion.origin != "edit")
            .order_by(col(Completion.id))
        ).all()
        prompts = {
            set_id: (instructions, messages)
            for set_id, instructions, messages in session.exec(
                select(CompletionSet.id, Prompt.instructions, Prompt.messages)
                .join(Prompt, col(Prompt.id) == col(CompletionSet.prompt_id))
                .where(col(CompletionSet.id).in_(set_ids))
            ).all()
        }
        for set_id in set_ids:
            mine = [(cid, text) for sid, cid, text in answers if sid == set_id and cid is not None]
            if len(mine) >= 2:
                instructions, messages = prompts.get(set_id) or (None, None)
                out.append(
                    _Work(
                        id_of(user),
                        judge.kind,
                        dict(judge.config),
                        rules,
                        set_id,
                        [c for c, _ in mine],
                        [t for _, t in mine],
                        [Instruction.from_dict(i) for i in instructions or []],
                        last_user_message(messages or []),
                    )
                )
    return out


def _record(session: Session, work: _Work, ranks: dict[int, int] | None) -> bool:
    """The judge's ranking of one set (its skip when it abstains), in one short transaction; False when it was
    there already (another worker got to it first)."""
    session.add(
        Ranking(
            set_id=work.set_id,
            user_id=work.judge_user_id,
            submission_id=f"judge-{work.judge_user_id}-{work.set_id}",
            ranks={} if ranks is None else {str(work.completion_ids[p]): r for p, r in ranks.items()},
            skipped=ranks is None,
        )
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def judge_waiting_sets(engine: Engine, *, limit: int = BATCH, compare: Compare | None = None) -> int:
    """Let every enabled judge rank up to `limit` waiting sets (model judges at most MODEL_BATCH, and only when
    `compare` asks their model); returns the rankings written (abstentions too)."""
    kinds = ("rules", "model") if compare is not None else ("rules",)
    with read_session(engine) as session:
        work = _work(session, limit, kinds)
        principles = current_constitution(session=session).principles if compare is not None else []
    verdicts = [(w, rank_by_rules(w.texts, w.rules, w.instructions)) for w in work if w.kind == "rules"]
    if compare is not None:  # outside any transaction, like the rules
        verdicts += _model_verdicts([w for w in work if w.kind == "model"], principles, compare)
    written = 0
    with Session(engine) as session:
        for item, ranks in verdicts:
            written += _record(session, item, ranks)
    return written


def _rules_of(judge: Judge, name: str) -> list[Rule]:
    """A rule judge's checks (none for a model judge)."""
    return (
        parse_rules(judge.config["rules"], where=f"judge {name!r}'s rules") if judge.kind == "rules" else []
    )


def _model_verdicts(
    work: list[_Work], principles: list[str], compare: Compare
) -> list[tuple[_Work, dict[int, int] | None]]:
    """Each set ranked by its model judge's wins, one `compare` call per judge model for all its sets."""
    out = []
    for model in sorted({w.config["model"] for w in work}):
        mine = [w for w in work if w.config["model"] == model]
        asked = [comparison_questions(w.config["template"], principles, w.request, w.texts) for w in mine]
        try:
            answers = compare(model, [q for a in asked for q in a.questions])
        except Exception as exc:  # a model that will not load must not stop the generator: its sets wait
            logger.warning("model judge %s: %s: %s; its sets wait", model, type(exc).__name__, exc)
            continue
        at = 0
        for item, a in zip(mine, asked, strict=True):
            p_first = answers[at : at + len(a.questions)]
            at += len(a.questions)
            out.append((item, rank_by_wins(len(item.texts), a.pairs, p_first)))
    return out
