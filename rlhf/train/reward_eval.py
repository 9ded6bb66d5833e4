"""Held-out evaluation of a reward model: pairwise accuracy, mean margin, loss, accuracy by agreement level,
agreement with each labeler, and the reward mean/std used for normalisation."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence

import torch

from labeler.labels.pairs import ranking_to_pairs
from rlhf.train.losses import bradley_terry_loss
from rlhf.train.reward_data import Group
from rlhf.train.scoring import RewardScorer, encode, fit_history, render_dialogue


def score_groups(
    scorer: RewardScorer, tokenizer, groups: list[Group], max_length: int, batch_texts: int = 16
) -> list[list[float]]:
    """A reward per completion of every group, each text scored once."""
    return score_sets(scorer, tokenizer, [(g.prompt, g.texts) for g in groups], max_length, batch_texts)


@torch.inference_mode()
def _score_rows(
    scorer: RewardScorer,
    tokenizer,
    sets: Sequence[tuple[Sequence[dict], Sequence[str]]],
    max_length: int,
    batch_texts: int,
    members: bool,
) -> list[list]:
    """Per set, per answer: its reward (a float), or with `members` every score-head member's reward."""
    rows = _per_text(
        scorer, tokenizer, sets, max_length, batch_texts, lambda ids, mask: scorer(ids, mask, members)
    )
    return [r.tolist() for r in rows]


def _per_text(
    scorer: RewardScorer,
    tokenizer,
    sets: Sequence[tuple[Sequence[dict], Sequence[str]]],
    max_length: int,
    batch_texts: int,
    run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[torch.Tensor]:
    """`run(input_ids, attention_mask)` over every answer of every set in batches of `batch_texts`: per set,
    its rows stacked (float, on the CPU)."""
    texts: list[str] = []
    for prompt, answers in sets:
        history = fit_history(tokenizer, prompt, answers, max_length)  # oldest turns first, never an answer
        texts.extend(render_dialogue(tokenizer, history, t) for t in answers)
    device = next(scorer.parameters()).device
    parts = []
    for i in range(0, len(texts), batch_texts):
        enc = encode(tokenizer, texts[i : i + batch_texts], max_length, device)
        parts.append(run(enc["input_ids"], enc["attention_mask"]).float().cpu())
    flat = torch.cat(parts) if parts else torch.zeros(0)
    return list(flat.split([len(answers) for _, answers in sets]))


@torch.inference_mode()
def set_features(
    scorer: RewardScorer,
    tokenizer,
    sets: Sequence[tuple[Sequence[dict], Sequence[str]]],
    max_length: int,
    batch_texts: int = 16,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per set: its answers' last hidden states [answers, hidden] (what the score head reads) and rewards
    [answers] (the head's mean, in the model's raw units), for rlhf/select/design.py."""

    def run(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = scorer.last_hidden(ids, mask)
        return torch.cat([hidden, scorer.head(hidden).unsqueeze(-1)], dim=-1)

    rows = _per_text(scorer, tokenizer, sets, max_length, batch_texts, run)
    return [(r[:, :-1], r[:, -1]) for r in rows]


def score_sets(
    scorer: RewardScorer,
    tokenizer,
    sets: Sequence[tuple[Sequence[dict], Sequence[str]]],
    max_length: int,
    batch_texts: int = 16,
) -> list[list[float]]:
    """A reward per answer of every (prompt, answers) set, in batches of `batch_texts`."""
    return _score_rows(scorer, tokenizer, sets, max_length, batch_texts, members=False)


def score_set_members(
    scorer: RewardScorer,
    tokenizer,
    sets: Sequence[tuple[Sequence[dict], Sequence[str]]],
    max_length: int,
    batch_texts: int = 16,
) -> list[list[list[float]]]:
    """Every score-head member's reward per answer of every set: [set][answer][member]."""
    return _score_rows(scorer, tokenizer, sets, max_length, batch_texts, members=True)


def _bucket(agreement: float) -> str:
    return "unanimous" if agreement >= 0.999 else "majority"


def evaluate(scorer: RewardScorer, tokenizer, groups: list[Group], max_length: int) -> dict:
    if not groups:
        return {}
    scorer.eval()
    scores = score_groups(scorer, tokenizer, groups, max_length)
    chosen, rejected, correct_by = [], [], defaultdict(list)
    tie_gaps: list[float] = []
    rejected_all = [s[k] for g, s in zip(groups, scores, strict=True) for k in g.negatives]
    per_labeler: dict[str, list[bool]] = defaultdict(list)
    for g, s in zip(groups, scores, strict=True):
        for c, r, margin, agreement in g.pairs:
            if margin == 0:  # a tie pair (keep_ties): no winner to get right
                tie_gaps.append(abs(s[c] - s[r]))
                continue
            chosen.append(s[c])
            rejected.append(s[r])
            correct_by[_bucket(agreement)].append(s[c] > s[r])
        by_id = dict(zip(g.completion_ids, s, strict=True))
        for ranking in g.rankings:
            for p in ranking_to_pairs(ranking):
                if p.margin > 0 and p.chosen in by_id and p.rejected in by_id:
                    per_labeler[str(ranking.labeler or "imported")].append(
                        by_id[p.chosen] > by_id[p.rejected]
                    )
    chosen_t, rejected_t = torch.tensor(chosen), torch.tensor(rejected)
    all_rewards = [x for s in scores for x in s]
    return {
        "accuracy": (chosen_t > rejected_t).float().mean().item(),
        "mean_margin": (chosen_t - rejected_t).mean().item(),
        "loss": bradley_terry_loss(chosen_t, rejected_t).item(),
        "pairs": len(chosen),
        "tie_pairs": len(tie_gaps),
        "tie_mean_gap": statistics.fmean(tie_gaps) if tie_gaps else None,
        # answers of "none acceptable" sets (none_acceptable=below_reference): trained to score below 0
        "none_acceptable_mean": statistics.fmean(rejected_all) if rejected_all else None,
        "accuracy_by_agreement": {k: sum(v) / len(v) for k, v in correct_by.items()},
        "labeler_agreement": {k: sum(v) / len(v) for k, v in per_labeler.items()},
        "reward_mean": statistics.fmean(all_rewards),
        "reward_std": statistics.pstdev(all_rewards) or 1.0,
    }
