"""PPO's arithmetic as small pure functions on tensors: masked statistics, KL estimators, GAE, the clipped
losses and the adaptive KL controller. Every tensor is [batch, response tokens] with a 0/1 mask."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


Total = Callable[[torch.Tensor], torch.Tensor]


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, total: Total | None = None
) -> torch.Tensor:
    """Zero mean (optionally kept), unit variance over the masked entries; masked-out entries become 0.

    `total` sums a tensor over every process's batch (under several processes), so the statistics are those of
    the whole rollout, as one process holding all of it would compute them."""
    if total is None:
        mean, var = masked_mean(x, mask), masked_var(x, mask)
    else:
        count = total(mask.sum()).clamp(min=1)
        mean = total((x * mask).sum()) / count
        var = total((((x - mean) * mask) ** 2).sum()) / count
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token KL(policy || reference) from sampled tokens: k1 = log r, k3 = (r - 1) - log r with r = p_ref/p."""
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; use k1 or k3")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """-kl_coef * KL on every response token, plus the sequence score on its last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += scores
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens; returns (advantages, returns). Padding is 0."""
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(rewards.shape[0], device=rewards.device)
    running = torch.zeros_like(next_value)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running * m
        # padding after the end passes nothing backwards
        next_value = torch.where(m > 0, values[:, t], next_value)
        running = running * m
    returns = (advantages + values) * mask
    return advantages, returns


def leave_one_out(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """Each sequence's reward minus the mean of the other `group - 1` in its group (RLOO, Ahmadian et al. 2024).

    `rewards` is [batch] with each prompt's `group` answers next to each other; the baseline is what the same
    prompt earned without this answer, so an advantage says how much better it is *for this prompt*."""
    if group < 2 or rewards.shape[0] % group:
        raise ValueError(f"{rewards.shape[0]} rewards do not split into groups of {group} (need group >= 2)")
    grouped = rewards.view(-1, group)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (group - 1)
    return (grouped - baseline).reshape(-1)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate; returns (loss, clip fraction, approximate KL k3 between new and old)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clip_frac = masked_mean((clipped > unclipped).float(), mask)
    approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, clip_frac, approx_kl


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> torch.Tensor:
    """0.5 * max((v - R)^2, (clip(v, v_old ± clip) - R)^2), masked mean."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    var = masked_var(returns, mask)
    return float(1 - masked_var(returns - values, mask) / var) if var > 0 else 0.0


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): nudge the coefficient so the measured KL tracks `target`. Each update multiplies it
    by 1 + e * n / horizon (e the relative error, clipped to +-0.2), so over `horizon` episodes it can move by
    up to e^0.2; their horizon (10,000) suits long runs, not a round of a few hundred episodes."""

    value: float
    target: float
    horizon: int = 10000

    def update(self, current_kl: float, n_steps: int) -> float:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon
        return self.value


def round_horizon(steps: int, batch: int, horizon: int | None = None) -> int:
    """The controller's horizon for a round: `horizon` when given, else an eighth of the round's episodes, so
    a KL off target the whole round moves the coefficient by up to e^1.6 (about 5x) before the round ends (a
    quarter, e^0.8, left bench/loop.py's first round at KL 7.4 against a target of 4)."""
    return horizon if horizon else max(1, steps * batch // 8)


@dataclass
class FixedKLController:
    value: float

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value


@dataclass
class LengthTrend:
    """The reward model's linear trend in answer length, fitted by least squares on every answer scored so far
    (the sums pooled over the round's steps, and over processes with `total`), and removed from each score:
    score - slope x (tokens - mean tokens). A learned reward that prefers short (or long) answers on its
    training data then no longer pays the policy to shorten (lengthen) every answer, while what it rewards at
    a given length stays; the mean score is unchanged."""

    n: float = 0.0
    x: float = 0.0
    y: float = 0.0
    xx: float = 0.0
    xy: float = 0.0

    def remove(self, tokens: torch.Tensor, scores: torch.Tensor, total=None) -> torch.Tensor:
        """`scores` with the trend fitted on them and every earlier batch taken out."""
        x, y = tokens.float(), scores.float()
        sums = torch.stack([torch.tensor(float(len(x))), x.sum(), y.sum(), (x * x).sum(), (x * y).sum()])
        sums = total(sums.to(scores.device)).cpu() if total is not None else sums
        for name, value in zip(("n", "x", "y", "xx", "xy"), sums.tolist(), strict=True):
            setattr(self, name, getattr(self, name) + value)
        return (y - self.slope * (x - self.x / self.n)).to(scores.dtype)

    @property
    def slope(self) -> float:
        """Reward per token of answer; 0 until the lengths vary."""
        spread = self.xx - self.x * self.x / self.n if self.n else 0.0
        return (self.xy - self.x * self.y / self.n) / spread if spread > 1e-9 else 0.0
