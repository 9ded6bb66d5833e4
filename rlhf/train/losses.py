"""Losses as short typed functions: Bradley-Terry for reward models (per pair and per ranked set), Davidson's
extension of it for ties, and a term for answers labelers found all unacceptable."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    center: float = 0.0,
    weights: torch.Tensor | None = None,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """mean(w * -log sigmoid(r_c - r_r - margin)) + center * mean((r_c + r_r)^2); w = 1 without `weights`.

    `smoothing` e reads each label as right with probability 1 - e (conservative DPO, cDPO): the pair's loss is
    -(1 - e) log sigmoid(d) - e log sigmoid(-d), whose minimum sits at a finite margin d = log((1 - e) / e)
    instead of pushing noisy pairs' margins to infinity."""
    diff = chosen - rejected if margin is None else chosen - rejected - margin
    per_pair = -F.logsigmoid(diff)
    if smoothing:
        per_pair = (1 - smoothing) * per_pair - smoothing * F.logsigmoid(-diff)
    loss = (per_pair if weights is None else per_pair * weights).mean()
    if center:
        loss = loss + center * ((chosen + rejected) ** 2).mean()
    return loss


def davidson_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    tie: torch.Tensor,
    margin: torch.Tensor | None = None,
    log_strength: float = 0.0,
    center: float = 0.0,
) -> torch.Tensor:
    """Davidson's (1970) Bradley-Terry with ties: with d = r_a - r_b and nu = exp(log_strength),
    P(a > b) = e^(d/2) / Z, P(tie) = nu / Z, Z = e^(d/2) + e^(-d/2) + nu. Strict pairs (tie False) take
    -log P(chosen > rejected), ties -log P(tie), which pulls the two scores together instead of apart.
    `margin` shifts strict pairs only."""
    diff = chosen - rejected
    if margin is not None:
        diff = diff - torch.where(tie, torch.zeros_like(margin), margin)
    log_nu = torch.full_like(diff, log_strength)
    log_z = torch.logsumexp(torch.stack([diff / 2, -diff / 2, log_nu]), dim=0)
    loss = (log_z - torch.where(tie, log_nu, diff / 2)).mean()
    if center:
        loss = loss + center * ((chosen + rejected) ** 2).mean()
    return loss


def below_reference_loss(scores: torch.Tensor) -> torch.Tensor:
    """For answers in sets a labeler marked "none acceptable": each should lose to a reference answer scored 0
    (the level the centred reward model gives an average answer): mean(-log sigmoid(-r))."""
    return -F.logsigmoid(-scores).mean()


def ranking_batch_loss(
    scores: torch.Tensor,
    pairs: torch.Tensor,
    margin: torch.Tensor | None = None,
    center: float = 0.0,
    ties: torch.Tensor | None = None,
    tie_log_strength: float = 0.0,
    weights: torch.Tensor | None = None,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Bradley-Terry over every pair of every ranked set, each completion scored once (InstructGPT's trick).

    `scores`: [T] one reward per unique completion in the batch; `pairs`: [P, 2] (chosen, rejected) indices;
    `ties`: [P] bool, when the batch holds tie pairs (Davidson's likelihood then); `weights`: [P] per-pair
    weights (reliability-weighted consensus; strict pairs only). Without ties it equals `bradley_terry_loss` on
    the gathered scores exactly. `smoothing`: label smoothing of strict pairs (see `bradley_terry_loss`).
    """
    chosen, rejected = scores[pairs[:, 0]], scores[pairs[:, 1]]
    if ties is None:
        return bradley_terry_loss(chosen, rejected, margin, center, weights, smoothing)
    if weights is not None or smoothing:
        raise ValueError("per-pair weights and label smoothing take strict pairs only (no ties)")
    return davidson_loss(chosen, rejected, ties, margin, tie_log_strength, center)
