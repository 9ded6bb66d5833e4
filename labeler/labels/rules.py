"""Rule judges' checks: what an admin writes, one check a line, without code, and how a set is ranked by them.

    must match: \\bthank you\\b           (a regular expression; case-sensitive unless it says (?i))
    must not match: (?i)as an ai
    fewer than 60 words
    at least 10 words
    starts with: Sure
    ends with: Is there anything else?
    all lowercase
    all capitals
    instructions                         (the prompt's own verifiable instructions, where it carries them)

Blank lines and lines starting with `#` are skipped. Each answer scores the number of checks it meets (the
`instructions` check counts each of the prompt's instructions met); the set is ranked by score, equal scores tied.
A judge abstains on a set where none of its checks applies (only `instructions`, and the prompt carries none).
Patterns run under the `regex` module with a time limit, so a pattern that backtracks without end fails the
check instead of stalling the worker. Torch-free: the web process imports it.

    rules = parse_rules("fewer than 30 words\\nends with: Thanks.")
    rank_by_rules(["Short. Thanks.", "A long answer " * 20], rules, [])  # {0: 1, 1: 2}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import regex

from labeler.labels.instructions import Instruction, constraints_met

MATCH_SECONDS = 0.05  # a pattern's time limit per answer
MAX_RULES = 50
MAX_LINE = 500
_COUNTED = {"fewer than": "fewer_than", "at least": "at_least"}  # "<prefix> N words"
_VALUED = {  # "<prefix>: value"
    "must match": "must_match",
    "must not match": "must_not_match",
    "starts with": "starts_with",
    "ends with": "ends_with",
}
_BARE = {"all lowercase": "lowercase", "all capitals": "capitals", "instructions": "instructions"}
_AS_INSTRUCTION = {  # checks an instruction kind already checks: (its kind, the parameter the value fills)
    "fewer_than": ("max_words", ("n",)),
    "at_least": ("min_words", ("n",)),
    "ends_with": ("end_phrase", ("phrase",)),
    "lowercase": ("lowercase", ()),
    "capitals": ("capitals", ()),
}


class RulesError(ValueError):
    """Rules that cannot be read: the message names where, the line and the check."""


@dataclass(frozen=True)
class Rule:
    kind: str  # one of the checks above, as a name: must_match, fewer_than, lowercase, instructions, ...
    value: str | int | None = None

    def applies(self, instructions: Sequence[Instruction]) -> bool:
        return self.kind != "instructions" or bool(instructions)

    def met(self, text: str, instructions: Sequence[Instruction]) -> int:
        """How many of this check's conditions the answer meets (0 or 1; per instruction for `instructions`)."""
        if self.kind == "instructions":
            return constraints_met(text, instructions)
        return int(self._holds(text))

    def _holds(self, text: str) -> bool:
        if self.kind in ("must_match", "must_not_match"):
            try:
                found = regex.search(str(self.value), text, timeout=MATCH_SECONDS) is not None
            except TimeoutError:
                return False  # a pattern that runs too long meets nothing
            return found == (self.kind == "must_match")
        if self.kind == "starts_with":
            return text.strip().lower().startswith(str(self.value).lower())
        kind, params = _AS_INSTRUCTION[self.kind]  # the instruction checker that means the same
        return Instruction(kind, {name: self.value for name in params}).check(text)

    def describe(self) -> str:
        for prefix, kind in {**_VALUED, **_BARE}.items():
            if kind == self.kind:
                return prefix if self.value is None else f"{prefix}: {self.value}"
        prefix = next(p for p, k in _COUNTED.items() if k == self.kind)
        return f"{prefix} {self.value} words"


def _parse_line(line: str, where: str) -> Rule:
    lowered = line.lower()
    if lowered in _BARE:
        return Rule(_BARE[lowered])
    for prefix, kind in _VALUED.items():
        if lowered.startswith(prefix + ":"):
            value = line[len(prefix) + 1 :].strip()
            if not value:
                raise RulesError(f"{where}, check {prefix!r}: give a value after the colon")
            if kind in ("must_match", "must_not_match"):
                try:
                    regex.compile(value)
                except regex.error as exc:
                    raise RulesError(f"{where}, check {prefix!r}: not a regular expression ({exc})") from None
            return Rule(kind, value)
    for prefix, kind in _COUNTED.items():
        if lowered.startswith(prefix + " "):
            words = lowered[len(prefix) :].split()
            if len(words) == 2 and words[0].isdigit() and words[1] == "words" and int(words[0]) > 0:
                return Rule(kind, int(words[0]))
            raise RulesError(f"{where}, check {prefix!r}: write it as '{prefix} N words' with N above 0")
    known = [*_VALUED, *(f"{p} N words" for p in _COUNTED), *_BARE]
    raise RulesError(f"{where}: {line[:60]!r} is not a check; use one of: {', '.join(known)}")


def parse_rules(text: str, where: str = "rules") -> list[Rule]:
    """The checks in `text`, one a line; RulesError naming `where`, the line and the check for one it cannot
    read, and for none at all."""
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) > MAX_LINE:
            raise RulesError(f"{where}, line {number}: longer than {MAX_LINE} characters")
        rules.append(_parse_line(line, f"{where}, line {number}"))
    if not rules:
        raise RulesError(f"{where}: no check; write one a line, for instance 'fewer than 60 words'")
    if len(rules) > MAX_RULES:
        raise RulesError(f"{where}: {len(rules)} checks; at most {MAX_RULES}")
    return rules


def rules_scores(
    texts: Sequence[str], rules: Sequence[Rule], instructions: Sequence[Instruction]
) -> list[int]:
    """Each answer's count of checks met (the applicable checks only)."""
    active = [rule for rule in rules if rule.applies(instructions)]
    return [sum(rule.met(text, instructions) for rule in active) for text in texts]


def rank_by_rules(
    texts: Sequence[str], rules: Sequence[Rule], instructions: Sequence[Instruction]
) -> dict[int, int] | None:
    """{answer position: rank} (1 best; equal scores share a rank, the next rank follows on: 1, 1, 2), or None
    to abstain where no check applies."""
    if not any(rule.applies(instructions) for rule in rules):
        return None
    scores = rules_scores(texts, rules, instructions)
    levels = sorted(set(scores), reverse=True)
    return {position: levels.index(score) + 1 for position, score in enumerate(scores)}
