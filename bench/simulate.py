"""Simulated labelers for tests and benchmarks (never imported by the product): scripted people with a hidden preference who rank through
the same store functions as real labelers. Their accounts are named `sim-*` and every ranking they submit carries
the comment "simulated", so they are never mistaken for human labels.

    labelers = [SimulatedLabeler("a", noise=0.1), SimulatedLabeler("b", noise=0.3, seed=1)]
    label_waiting_sets(engine, labelers)
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.io.instruction_prompts import stored_instructions
from labeler.labels.instructions import Instruction, count_words, instructions_then_ending
from labeler.store.leasing import lease_next_set
from labeler.store.store import EditIn, RankingIn, submit_ranking
from labeler.store.tables import id_of
from labeler.store.users import add_user, get_user

SIMULATED = "simulated"
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)


Preference = Callable[[str, str, Sequence[Instruction]], float]


def concise_and_finished(text: str, finish_reason: str, instructions: Sequence[Instruction] = ()) -> float:
    """One rule for every prompt (the prompt's instructions are ignored): answers that end properly, are concise
    (about 10-40 words) and avoid lists."""
    words = len(text.split())
    score = 0.0
    score += 1.5 if finish_reason == "eos" else -1.5
    score += 0.5 if text.rstrip().endswith((".", "!", "?")) else 0.0
    score -= abs(words - 25) / 25
    score -= 0.5 * len(_LIST_LINE.findall(text))
    score -= 2.0 if words == 0 else 0.0
    return score


SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def _cut_words(text: str, n: int) -> str:
    """The text's first words, as many as keep it under `n` (the checker's count), ended with a full stop."""
    words = text.split()
    while words and count_words(" ".join(words)) >= n:
        words.pop()
    return " ".join(words).rstrip(",;:") + ("." if words and not words[-1].endswith((".", "!", "?")) else "")


def _finished(text: str, finish_reason: str) -> str:
    """An answer cut at the length limit ends at its last full sentence, as a person would fix it."""
    if finish_reason != "length":
        return text
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]] if ends else text.rstrip() + "."


# The repair of each instruction a person would make, in the order they are applied: length first, the wrap last.
REPAIRS: list[tuple[str, Callable[[str, dict], str]]] = [
    ("max_words", lambda t, p: _cut_words(t, int(p["n"]))),
    ("no_commas", lambda t, p: t.replace(",", "")),
    ("start_word", lambda t, p: f"{p['word']} {t.lstrip()}"),
    ("keyword", lambda t, p: f"{t.rstrip()} {str(p['word']).capitalize()}."),
    ("title", lambda t, p: f"<<Answer>>\n\n{t}"),
    ("postscript", lambda t, p: f"{t.rstrip()}\n\n{p['marker']} I hope this helps."),
    ("end_phrase", lambda t, p: f"{t.rstrip()} {p['phrase']}"),
    ("lowercase", lambda t, p: t.lower()),
    ("capitals", lambda t, p: t.upper()),
    ("quotation", lambda t, p: f'"{t.strip()}"'),
]


def repaired(text: str, finish_reason: str, instructions: Sequence[Instruction]) -> str:
    """`text` with what the prompt's instructions ask for and it misses repaired, and nothing more (an answer cut
    at the length limit is ended first). Instructions no small edit meets (at least N words, N bullets) stay
    as they are."""
    out = _finished(text, finish_reason)
    failed = {rule.kind: rule.params for rule in instructions if not rule.check(out)}
    for kind, repair in REPAIRS:
        if kind in failed:
            out = repair(out, failed[kind])
    return out


PREFERENCES: dict[str, Preference] = {
    "concise": concise_and_finished,
    "instructions": instructions_then_ending,
}


@dataclass
class SimulatedLabeler:
    name: str
    noise: float = 0.0  # std of Gaussian noise added to the hidden score before ranking
    seed: int = 0
    preference: Preference = field(default=concise_and_finished)
    tie_within: float = (
        0.0  # answers whose noisy scores are this close to the one ranked above share its rank
    )
    none_below: float | None = None  # "none acceptable" when even the best noisy score is below this
    edits: float = 0.0  # share of sets where the labeler repairs the answer they ranked first (`repaired`)
    edit_seconds: float = 30.0  # what one edit is taken to cost, for the costs table

    def verdict(self, completions, rng: random.Random, instructions: Sequence[Instruction] = ()) -> RankingIn:
        """This labeler's ranking of a set (ranks with ties, or "none acceptable"), set and user ids left 0."""
        noisy = {
            c.id: self.score(c.text, c.finish_reason, instructions) + rng.gauss(0, self.noise)
            for c in completions
        }
        if self.none_below is not None and max(noisy.values()) < self.none_below:
            return RankingIn(0, 0, "", none_acceptable=True, comment=SIMULATED)
        order = sorted(completions, key=lambda c: -noisy[c.id])
        ranks, rank = {order[0].id: 1}, 1
        for above, c in pairwise(order):
            if self.tie_within <= 0 or noisy[above.id] - noisy[c.id] > self.tie_within:
                rank += 1
            ranks[c.id] = rank
        edits = self.edit_of(order[0], rng, instructions) if self.edits > 0 else []
        return RankingIn(0, 0, "", ranks=ranks, comment=SIMULATED, edits=edits)

    def edit_of(self, best, rng: random.Random, instructions: Sequence[Instruction]) -> list[EditIn]:
        """On a share `edits` of sets, the best answer repaired (none when it needs no repair)."""
        if rng.random() >= self.edits:
            return []
        text = repaired(best.text, best.finish_reason, instructions)
        same = text.strip() == best.text.strip() or not text.strip()
        return [] if same else [EditIn(text=text, source_id=best.id, seconds=self.edit_seconds)]

    @property
    def account(self) -> str:
        return f"sim-{self.name}"

    def score(self, text: str, finish_reason: str, instructions: Sequence[Instruction] = ()) -> float:
        """The hidden preference, without noise (the judge in benchmarks)."""
        return self.preference(text, finish_reason, instructions)

    def rank(
        self, completions, rng: random.Random, instructions: Sequence[Instruction] = ()
    ) -> dict[int, int]:
        """Ranks only (1 = best; ties within `tie_within`); the "none acceptable" option is `verdict`'s."""
        return self.verdict(completions, rng, instructions).ranks


def ensure_accounts(engine: Engine, labelers: list[SimulatedLabeler]) -> dict[str, int]:
    ids = {}
    with Session(engine) as session:
        for lab in labelers:
            user = get_user(session=session, name=lab.account) or add_user(
                session=session, name=lab.account, password=uuid.uuid4().hex
            )
            ids[lab.name] = id_of(user)
    return ids


def label_waiting_sets(
    engine: Engine, labelers: list[SimulatedLabeler], max_per_labeler: int | None = None
) -> int:
    """Each labeler ranks what the store offers it (lease + submit) until nothing waits; returns rankings written."""
    ids = ensure_accounts(engine, labelers)
    written = 0
    for lab in labelers:
        rng = random.Random(lab.seed)
        done = 0
        with Session(engine) as session:
            while max_per_labeler is None or done < max_per_labeler:
                leased = lease_next_set(session=session, user_id=ids[lab.name], seed=rng.randrange(1 << 30))
                if leased is None:
                    break
                verdict = lab.verdict(
                    leased.completions, rng, stored_instructions(leased.prompt.instructions)
                )
                ranking = replace(
                    verdict, set_id=id_of(leased.set), user_id=ids[lab.name], submission_id=uuid.uuid4().hex
                )
                submit_ranking(session=session, ranking=ranking)
                done += 1
        written += done
    return written
