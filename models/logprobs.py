"""Log-probabilities of answers given their prompts, one causal-LM forward pass per batch: what DPO's loss and
the KL of a version from v0 (models/divergence.py) both need.

    rows = [(prompt_ids, answer_ids), ...]
    logp = answer_logprobs(model, rows, pad_id=tokenizer.pad_token_id)   # [len(rows)], differentiable
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Row = tuple[list[int], list[int]]  # (prompt token ids, answer token ids)


def fit_row(prompt: list[int], answer: list[int], max_length: int) -> Row:
    """Cut a row to `max_length` tokens from the left: the prompt's start goes first; at least one prompt token
    stays, so the first answer token is still predicted."""
    answer = answer[: max_length - 1]
    return prompt[-(max_length - len(answer)) :], answer


def aligned(rows: Sequence[Row], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows laid out so every answer starts in the same column: prompts padded on the left to the longest,
    answers on the right. Returns input ids, attention mask and position ids ([rows, longest prompt + longest
    answer]); a row's positions count its own tokens only, so its padding changes nothing it computes."""
    start = max(len(p) for p, _ in rows)
    width = start + max(len(a) for _, a in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, a) in enumerate(rows):
        ids[i, start - len(p) : start + len(a)] = torch.tensor(p + a)
        mask[i, start - len(p) : start + len(a)] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, positions


def answer_distributions(
    model: nn.Module, rows: Sequence[Row], *, pad_id: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At every answer token of every row (in order): the log-probabilities over the vocabulary at `temperature`
    ([tokens, vocab]), the token written ([tokens]) and its row's index ([tokens]). The answers are aligned
    (`aligned`), so the model computes logits for the answer columns only (`logits_to_keep`): the prompts'
    columns skip the output layer, which over a vocabulary of 49k is a fifth of a small model's work."""
    ids, mask, positions = aligned(rows, pad_id)
    device = next(model.parameters()).device
    answer_width = max(len(a) for _, a in rows)
    logits = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=answer_width + 1,
    ).logits[:, :-1]  # column t predicts token t + 1: the last column predicts nothing written
    written_ids = ids[:, -answer_width:].to(logits.device)
    scored = mask[:, -answer_width:].bool().to(logits.device)
    logprobs = F.log_softmax(logits[scored].float() / temperature, dim=-1)
    row = torch.arange(len(rows), device=logits.device).unsqueeze(1).expand_as(scored)[scored]
    return logprobs, written_ids[scored], row


def exact_kl(policy: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Per position, KL(policy || base) between two log-probability distributions over the vocabulary
    ([tokens, vocab] each -> [tokens])."""
    return (policy.exp() * (policy - base)).sum(-1)


def written(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per position, the log-probability of the token written ([tokens, vocab], [tokens] -> [tokens])."""
    return logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)


def per_row(values: torch.Tensor, row: torch.Tensor, rows: int) -> torch.Tensor:
    """Per-token values summed into their rows ([rows])."""
    return torch.zeros(rows, device=values.device, dtype=values.dtype).index_add(0, row, values)


def answer_logprobs(
    model: nn.Module, rows: Sequence[Row], *, pad_id: int, temperature: float = 1.0
) -> torch.Tensor:
    """Each row's summed log-probability of its answer tokens under `model` (as called: with whatever adapter
    is active, with or without gradients), at `temperature`."""
    logprobs, targets, row = answer_distributions(model, rows, pad_id=pad_id, temperature=temperature)
    return per_row(written(logprobs, targets), row, len(rows))
