"""Losses as short typed functions: Bradley-Terry for reward models (per pair and per ranked set)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None, center: float = 0.0
) -> torch.Tensor:
    """mean(-log sigmoid(r_c - r_r - margin)) + center * mean((r_c + r_r)^2)."""
    diff = chosen - rejected if margin is None else chosen - rejected - margin
    loss = -F.logsigmoid(diff).mean()
    if center:
        loss = loss + center * ((chosen + rejected) ** 2).mean()
    return loss


def ranking_batch_loss(
    scores: torch.Tensor, pairs: torch.Tensor, margin: torch.Tensor | None = None, center: float = 0.0
) -> torch.Tensor:
    """Bradley-Terry over every pair of every ranked set, each completion scored once (InstructGPT's trick).

    `scores`: [T] one reward per unique completion in the batch; `pairs`: [P, 2] (chosen, rejected) indices.
    Equals `bradley_terry_loss` on the gathered scores exactly.
    """
    return bradley_terry_loss(scores[pairs[:, 0]], scores[pairs[:, 1]], margin, center)
