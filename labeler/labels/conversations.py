"""Conversations turn by turn. When a set is decided (every label it needs is in), the conversation can go on: its
history, the chosen answer (the labelers' consensus first; an edit ranks where its labeler put it) and a next user
message become a new prompt, whose sets the current policy generates like any other. Where the next message comes
from is the admin's choice per prompt source: `labeler` (the box under the ranking: the first labeler who wrote
one), `list` (the prompt's imported follow-ups, one per turn, those unused passed on to the next turn) or
`none` (the branch ends there). The depth is
capped; an admin can stop a branch. Every prompt keeps the set and answer it continues, its conversation (the
first turn's prompt id) and its turn, so Browse can draw the tree and the export can say which turn a pair is.

    with Session(engine) as s:
        set_conversations(session=s, default="labeler", depth=3)
        continue_conversations(session=s)          # the generator calls it each step: new prompts, one write
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, cast, get_args

from sqlmodel import Session, col, select

from labeler.labels.consensus import consensus_order
from labeler.labels.dataset import SetRankings, load_set_rankings
from labeler.labels.instructions import Instruction
from labeler.store.settings import get_setting, put_setting
from labeler.store.store import last_user_message, messages_hash
from labeler.store.tables import CompletionSet, Prompt, Ranking, id_of

Source = Literal["none", "labeler", "list"]
Prefer = Literal["finish", "fresh"]
SETTING = "conversations"
MAX_DEPTH = 16
BATCH = 64  # decided sets looked at per call


@dataclass(frozen=True)
class Conversations:
    """Where next user messages come from (per prompt source, else `default`), how deep a conversation goes (user
    turns), and whether the generator serves later turns before fresh prompts."""

    default: Source = "none"
    by_source: dict[str, Source] = field(default_factory=dict)
    depth: int = 3
    prefer: Prefer = "finish"

    @property
    def later_turns_first(self) -> bool | None:
        """What leasing and the generator prefer: True later turns first, False fresh prompts first, None off."""
        return (self.prefer == "finish") if self.on else None

    def source_of(self, prompt_source: str) -> Source:
        return self.by_source.get(prompt_source, self.default)

    @property
    def on(self) -> bool:
        return self.depth > 1 and (
            self.default != "none" or any(v != "none" for v in self.by_source.values())
        )


def conversations(*, session: Session) -> Conversations:
    stored = get_setting(session=session, key=SETTING, default=None)
    return Conversations(**stored) if isinstance(stored, dict) else Conversations()


def set_conversations(
    *,
    session: Session,
    default: str = "none",
    by_source: dict[str, str] | None = None,
    depth: int = 3,
    prefer: str = "finish",
) -> Conversations:
    """Save the admin's choices; ValueError naming the one that cannot be used."""
    choices = get_args(Source)
    for where, value in [("default", default), *((f"source {k!r}", v) for k, v in (by_source or {}).items())]:
        if value not in choices:
            raise ValueError(f"{where}: next messages come from one of {', '.join(choices)}, not {value!r}")
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth = {depth}: a conversation has 1 to {MAX_DEPTH} user turns")
    if prefer not in get_args(Prefer):
        raise ValueError(f"prefer = {prefer!r}: use finish (later turns first) or fresh (new prompts first)")
    chosen = Conversations(
        cast(Source, default),
        {k: cast(Source, v) for k, v in (by_source or {}).items()},
        depth,
        cast(Prefer, prefer),
    )
    put_setting(session=session, key=SETTING, value=asdict(chosen))
    return chosen


def chosen_answer(rankings: SetRankings) -> int | None:
    """The answer a conversation continues from: the consensus's first (an edit before the answer it came from,
    then the lowest id, where several share first place); None where no labeler ranked any answer."""
    order = consensus_order(rankings.rankings)
    if not order:
        return None
    best = min(order.values())
    firsts = [cid for cid, rank in order.items() if rank == best]
    return min(firsts, key=lambda cid: (rankings.origin_of(cid) != "edit", cid))


@dataclass(frozen=True)
class NextTurn:
    content: str
    instructions: list[dict] | None = None


def next_message(session: Session, prompt: Prompt, set_id: int, source: Source) -> NextTurn | None:
    """The next user message of `prompt`'s conversation after set `set_id`, where `source` says to find it."""
    if source == "labeler":
        written = session.exec(
            select(Ranking.follow_up)
            .where(Ranking.set_id == set_id, col(Ranking.follow_up).is_not(None))
            .order_by(col(Ranking.created_at), col(Ranking.id))
        ).first()
        return NextTurn(written) if written else None
    if source == "list" and prompt.follow_ups:
        item = prompt.follow_ups[0]
        if isinstance(item, dict):
            return NextTurn(str(item.get("content", "")), item.get("instructions"))
        return NextTurn(str(item))
    return None


def _decided(session: Session, settings: Conversations, limit: int) -> list[tuple[CompletionSet, Prompt]]:
    """Decided sets that have a next message (a labeler's, or an imported follow-up left) and no continuation
    yet, of prompts still open to a next turn, newest first."""
    continued = select(Prompt.parent_set_id).where(col(Prompt.parent_set_id).is_not(None))
    written = select(Ranking.set_id).where(col(Ranking.follow_up).is_not(None))
    rows = session.exec(
        select(CompletionSet, Prompt)
        .join(Prompt, col(Prompt.id) == col(CompletionSet.prompt_id))
        .where(
            col(CompletionSet.labels_done) >= col(CompletionSet.labels_needed),
            col(Prompt.turn) < settings.depth,
            col(Prompt.stopped).is_(False),
            col(CompletionSet.id).not_in(continued),
            col(CompletionSet.id).in_(written) | col(Prompt.follow_ups).is_not(None),
        )
        .order_by(col(CompletionSet.id).desc())
    ).all()
    return [(s, p) for s, p in rows if settings.source_of(p.source) != "none"][:limit]


def continue_conversations(*, session: Session, limit: int = BATCH) -> int:
    """A next-turn prompt for every decided set that has a next message; returns how many were added."""
    settings = conversations(session=session)
    if not settings.on:
        return 0
    found = _decided(session, settings, limit)
    if not found:
        return 0
    sets = {s.set_id: s for s in load_set_rankings(session=session, set_ids=[id_of(c) for c, _ in found])}
    added = 0
    for cset, prompt in found:
        turn = next_message(session, prompt, id_of(cset), settings.source_of(prompt.source))
        chosen = chosen_answer(sets[id_of(cset)]) if id_of(cset) in sets else None
        if turn is None or not turn.content.strip() or chosen is None:
            continue
        listed = settings.source_of(prompt.source) == "list"
        added += _add_turn(session, cset, prompt, chosen, sets[id_of(cset)].texts[chosen], turn, listed)
    session.commit()
    return added


def _add_turn(
    session: Session,
    cset: CompletionSet,
    prompt: Prompt,
    chosen: int,
    answer: str,
    turn: NextTurn,
    listed: bool,
) -> int:
    """The next turn's prompt (the imported follow-ups it did not use go with it); 0 where it exists already."""
    messages = [
        *prompt.messages,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": turn.content.strip()},
    ]
    digest = messages_hash(messages)
    if session.exec(select(Prompt.id).where(Prompt.content_hash == digest)).first() is not None:
        return 0  # another branch already reached the same history
    instructions = (
        [Instruction.from_dict(i).to_dict() for i in turn.instructions] if turn.instructions else None
    )
    session.add(
        Prompt(
            messages=messages,
            content_hash=digest,
            source=prompt.source,
            split=prompt.split,  # a held-out conversation stays held out
            instructions=instructions,
            parent_set_id=id_of(cset),
            parent_completion_id=chosen,
            conversation_id=prompt.conversation_id or id_of(prompt),
            turn=prompt.turn + 1,
            follow_ups=((prompt.follow_ups or [])[1:] or None) if listed else None,
        )
    )
    return 1


@dataclass(frozen=True)
class TurnSet:
    set_id: int
    labels: str  # "done/needed"
    chosen: str | None  # the answer the conversation continued from (or would), None while undecided


@dataclass(frozen=True)
class Turn:
    """One prompt of a conversation tree, in depth-first order."""

    prompt_id: int
    turn: int
    parent_prompt_id: int | None
    said: str  # the user's message at this turn
    continued_from: str | None  # the chosen answer of the parent set this turn continues
    stopped: bool
    sets: list[TurnSet]


def conversation_tree(*, session: Session, prompt_id: int) -> list[Turn]:
    """The whole conversation `prompt_id` belongs to, its first turn first, each turn followed by the turns that
    continue it; ValueError for an unknown prompt."""
    start = session.get(Prompt, prompt_id)
    if start is None:
        raise ValueError(f"no prompt {prompt_id}")
    root = start.conversation_id or id_of(start)
    prompts = session.exec(
        select(Prompt).where((col(Prompt.id) == root) | (col(Prompt.conversation_id) == root))
    ).all()
    sets = session.exec(
        select(CompletionSet).where(col(CompletionSet.prompt_id).in_([p.id for p in prompts]))
    ).all()
    decided = {s.set_id: s for s in load_set_rankings(session=session, set_ids=[id_of(s) for s in sets])}
    texts = {cid: text for s in decided.values() for cid, text in s.texts.items()}
    owner = {id_of(s): s.prompt_id for s in sets}
    children: dict[int | None, list[Prompt]] = {}
    for p in prompts:
        parent = owner.get(p.parent_set_id) if p.parent_set_id is not None else None
        children.setdefault(parent if id_of(p) != root else None, []).append(p)
    out: list[Turn] = []

    sets_of: dict[int, list[CompletionSet]] = {}
    for cset in sets:
        sets_of.setdefault(cset.prompt_id, []).append(cset)

    def visit(p: Prompt, parent: int | None) -> None:
        out.append(
            Turn(
                id_of(p),
                p.turn,
                parent,
                last_user_message(p.messages),
                texts.get(p.parent_completion_id) if p.parent_completion_id else None,
                p.stopped,
                [_turn_set(s, decided.get(id_of(s))) for s in sets_of.get(id_of(p), [])],
            )
        )
        for child in sorted(children.get(id_of(p), []), key=lambda c: id_of(c)):
            visit(child, id_of(p))

    for first in children.get(None, []):
        visit(first, None)
    return out


def _turn_set(cset: CompletionSet, rankings: SetRankings | None) -> TurnSet:
    chosen = chosen_answer(rankings) if rankings and cset.labels_done >= cset.labels_needed else None
    text = rankings.texts.get(chosen) if rankings and chosen is not None else None
    return TurnSet(id_of(cset), f"{cset.labels_done}/{cset.labels_needed}", text)


def stop_branch(*, session: Session, prompt_id: int) -> int:
    """Stop the branch at `prompt_id`: it and every turn after it get no new sets and no next turn. Returns the
    prompts stopped; ValueError for an unknown prompt."""
    tree = conversation_tree(session=session, prompt_id=prompt_id)
    below = {prompt_id}
    for turn in tree:  # depth-first: a turn's parent comes before it
        if turn.parent_prompt_id in below:
            below.add(turn.prompt_id)
    rows = session.exec(select(Prompt).where(col(Prompt.id).in_(below))).all()
    for row in rows:
        row.stopped = True
        session.add(row)
    session.commit()
    return len(rows)


def conversation_turns(*, session: Session, prompt_ids: set[int]) -> dict[int, tuple[int, int]]:
    """{prompt id: (its conversation's id, its turn)}: the export's provenance (a first turn is its own
    conversation)."""
    rows = session.exec(select(Prompt.id, Prompt.conversation_id, Prompt.turn)).all()
    return {pid: (conv or pid, turn) for pid, conv, turn in rows if pid is not None and pid in prompt_ids}
