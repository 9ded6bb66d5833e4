"""Verifiable instructions, in the style of IFEval's registry: each kind has a sentence that asks for it and a
checker that says whether a response meets it. They give prompts a per-prompt preference that a program can judge
(simulated labelers, gold items, benchmarks), so a preferred length or form can flip from one prompt to the next.

    rule = Instruction("max_words", {"n": 30})
    rule.describe()              # 'Answer in fewer than 30 words.'
    rule.check("Short answer.")  # True

Torch-free and offline (IFEval's own registry calls `nltk.download` when imported); the checks follow IFEval's
definitions where it has them (case-insensitive phrases, `*`/`-` bullets, a `<<title>>`, a `P.S.` line).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_WORD = re.compile(r"\b\w+\b")
_BULLET = re.compile(r"^\s*[*-]\s", re.MULTILINE)
_TITLE = re.compile(r"<<[^\n<>]+>>")


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _lowercase(text: str) -> bool:
    return _has_letters(text) and text == text.lower()


def _capitals(text: str) -> bool:
    return _has_letters(text) and text == text.upper()


def _no_commas(text: str) -> bool:
    return bool(text.strip()) and "," not in text


def _keyword(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE) is not None


def _max_words(text: str, n: int) -> bool:
    return 0 < count_words(text) < n


def _min_words(text: str, n: int) -> bool:
    return count_words(text) >= n


def _end_phrase(text: str, phrase: str) -> bool:
    return text.strip().lower().endswith(phrase.strip().lower())


def _start_word(text: str, word: str) -> bool:
    first = _WORD.search(text)
    return first is not None and first.start() <= 2 and first.group().lower() == word.lower()


def _quotation(text: str) -> bool:
    stripped = text.strip()
    return len(stripped) > 1 and stripped[0] == '"' and stripped[-1] == '"'


def _bullets(text: str, n: int) -> bool:
    return len(_BULLET.findall(text)) == n


def _title(text: str) -> bool:
    return _TITLE.search(text) is not None


def _postscript(text: str, marker: str) -> bool:
    pattern = r"^\s*" + re.escape(marker.lower()) + r".*\S"
    return re.search(pattern, text.lower(), flags=re.MULTILINE) is not None


@dataclass(frozen=True)
class Kind:
    """One instruction kind: the sentence asking for it (a format string over its parameters) and its check."""

    ask: str
    check: Callable[..., bool]
    params: tuple[str, ...] = ()


KINDS: dict[str, Kind] = {
    "lowercase": Kind("Your entire response should be in English, and in all lowercase letters.", _lowercase),
    "capitals": Kind("Your entire response should be in English, and in all capital letters.", _capitals),
    "no_commas": Kind("Do not use any commas in your response.", _no_commas),
    "keyword": Kind('Include the keyword "{word}" in your response.', _keyword, ("word",)),
    "max_words": Kind("Answer in fewer than {n} words.", _max_words, ("n",)),
    "min_words": Kind("Answer with at least {n} words.", _min_words, ("n",)),
    "end_phrase": Kind(
        'End your response with the exact phrase "{phrase}", with no other words after it.',
        _end_phrase,
        ("phrase",),
    ),
    "start_word": Kind('Start your response with the word "{word}".', _start_word, ("word",)),
    "quotation": Kind("Wrap your entire response with double quotation marks.", _quotation),
    "bullets": Kind(
        "Your answer must contain exactly {n} bullet points, in markdown: lines starting with '* '.",
        _bullets,
        ("n",),
    ),
    "title": Kind(
        "Your answer must contain a title, wrapped in double angular brackets, such as <<a title>>.", _title
    ),
    "postscript": Kind(
        "At the end of your response, add a postscript starting with {marker}", _postscript, ("marker",)
    ),
}

# Pairs no response can meet together (or that fight over the same place in it).
CONFLICTS = {
    frozenset(p)
    for p in [
        ("lowercase", "capitals"),
        ("max_words", "min_words"),
        ("quotation", "start_word"),
        ("quotation", "end_phrase"),
        ("quotation", "postscript"),
        ("quotation", "bullets"),
        ("end_phrase", "postscript"),
        ("bullets", "max_words"),
    ]
}


class InstructionError(ValueError):
    """An instruction with an unknown kind or missing parameters."""


@dataclass(frozen=True)
class Instruction:
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InstructionError(f"unknown instruction kind {self.kind!r}; known: {', '.join(KINDS)}")
        missing = [p for p in KINDS[self.kind].params if p not in self.params]
        if missing:
            raise InstructionError(f"instruction {self.kind!r} needs {', '.join(missing)}")

    def describe(self) -> str:
        return KINDS[self.kind].ask.format(**self.params)

    def check(self, text: str) -> bool:
        return KINDS[self.kind].check(text, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Instruction:
        return cls(str(data["kind"]), dict(data.get("params", {})))


def compatible(kinds: Sequence[str]) -> bool:
    return len(set(kinds)) == len(kinds) and not any(
        frozenset((a, b)) in CONFLICTS for i, a in enumerate(kinds) for b in kinds[i + 1 :]
    )


def constraints_met(text: str, instructions: Sequence[Instruction]) -> int:
    return sum(rule.check(text) for rule in instructions)


def strict_pass(text: str, instructions: Sequence[Instruction]) -> bool:
    """IFEval's strict measure: every instruction met."""
    return all(rule.check(text) for rule in instructions)


def ends_well(text: str, finish_reason: str) -> float:
    """Answer quality that says nothing about length or form: it ends (EOS, closing punctuation), it is not
    empty."""
    score = 1.5 if finish_reason == "eos" else -1.5
    score += 0.5 if text.rstrip().endswith((".", "!", "?", '"')) else 0.0
    return score - (2.0 if not text.strip() else 0.0)


CONSTRAINT_WEIGHT = 4.0  # above the whole range of `ends_well`, so instructions met decide first


def instructions_then_ending(
    text: str, finish_reason: str, instructions: Sequence[Instruction] = ()
) -> float:
    """The instruction rule judge: the number of the prompt's verifiable instructions an answer meets, then
    whether it ends well (`ends_well`). PPO's `gold` judge reads it on every rollout (rlhf/train/overopt.py)."""
    return CONSTRAINT_WEIGHT * constraints_met(text, instructions) + ends_well(text, finish_reason)
