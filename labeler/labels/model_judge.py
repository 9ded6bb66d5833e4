"""What a model judge asks and how its answers become a ranking. For a set of n answers it asks the comparison
prompt for every ordered pair (n(n-1) questions: each pair in both orders, which cancels a preference for the
first or second place); the model's P(first better) in both orders average to P(i better than j); an answer's
wins are the opponents it beats (P > 1/2), and the set is ranked by wins, equal wins tied. A set where every
answer has the same wins (a cycle, or a model that cannot tell) is abstained on. The model call itself lives in
rlhf/serve/model_judges.py: this module is the arithmetic, testable without a model.

    asked = comparison_questions(template, principles, request, texts)
    ranks = rank_by_wins(len(texts), asked.pairs, compare("base", asked.questions))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labeler.store.constitution import check_prompt

COMPARISON_FIELDS = ("principles", "prompt", "first", "second")
TIE = 1e-6  # a lead this small is rounding, not an opinion
Compare = Callable[
    [str, list[str]], list[float]
]  # (judge's model, questions) -> P(the first answer is better)


def check_comparison_prompt(template: str) -> None:
    """ValueError unless the template uses only, and shows all of, {principles} {prompt} {first} {second}."""
    check_prompt(template, COMPARISON_FIELDS, "comparison prompt", required=COMPARISON_FIELDS)


@dataclass(frozen=True)
class Asked:
    pairs: list[tuple[int, int]]  # (first, second) answer positions, one per question
    questions: list[str]


def comparison_questions(
    template: str, principles: Sequence[str], request: str, texts: Sequence[str]
) -> Asked:
    """Every ordered pair of `texts` as a filled-in comparison prompt."""
    listed = "\n".join(f"- {p}" for p in principles)
    pairs = [(i, j) for i in range(len(texts)) for j in range(len(texts)) if i != j]
    questions = [
        template.format(principles=listed, prompt=request, first=texts[i], second=texts[j]) for i, j in pairs
    ]
    return Asked(pairs, questions)


def rank_by_wins(n: int, pairs: Sequence[tuple[int, int]], p_first: Sequence[float]) -> dict[int, int] | None:
    """{answer position: rank} (1 best, equal wins share a rank: 1, 1, 2), or None where all wins are equal."""
    asked = dict(zip(pairs, p_first, strict=True))
    wins = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            lead = asked[(i, j)] - asked[(j, i)]  # P(i better than j) - 1/2, over both orders, times 2
            if abs(lead) > TIE:
                wins[i if lead > 0 else j] += 1
    levels = sorted(set(wins), reverse=True)
    if len(levels) < 2:
        return None
    return {position: levels.index(w) + 1 for position, w in enumerate(wins)}
