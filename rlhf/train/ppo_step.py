"""One PPO iteration in three parts: rollout (sample responses), scoring (rewards, KL, advantages) and update
(clipped losses over minibatches). Dropout stays off throughout so old and new log-probabilities compare."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.generation import render_prompts
from rlhf.train.ppo_math import (
    Total,
    explained_variance,
    gae,
    kl_estimate,
    leave_one_out,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)
from rlhf.train.ppo_model import SharedModel, policy_forward, reference_logprobs


@dataclass
class Rollout:
    input_ids: torch.Tensor  # [B, P + R]: left-padded prompt, response, pad after the end
    attention_mask: torch.Tensor
    prompt_len: int
    response_mask: torch.Tensor  # [B, R] float: response tokens up to and including EOS
    ended: torch.Tensor  # [B] bool: stopped at EOS

    @property
    def responses(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len :]


def sampling_kwargs(temperature: float) -> dict:
    """Sampling at `temperature`, or greedy decoding at 0 (deterministic rollouts, e.g. to compare runs)."""
    if temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}


@torch.no_grad()
def rollout(model, tokenizer, prompts: list[list[dict]], config) -> Rollout:
    """Sample one response per prompt from `model` (the policy adapter active), cut at the first EOS."""
    enc = tokenizer(
        render_prompts(tokenizer, prompts), return_tensors="pt", padding=True, add_special_tokens=False
    )
    enc = {k: v.to(model.device) for k, v in enc.items()}
    eos = tokenizer.eos_token_id
    out = model.generate(
        **enc,
        **sampling_kwargs(config.temperature),
        max_new_tokens=config.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos,
    )
    prompt_len = enc["input_ids"].shape[1]
    response = out[:, prompt_len:]
    is_eos = response == eos
    # keep tokens up to and including the first EOS
    after_end = (torch.cumsum(is_eos.int(), dim=1) - is_eos.int()) > 0
    response_mask = (~after_end).float()
    response = response.masked_fill(after_end, tokenizer.pad_token_id)
    ids = torch.cat([enc["input_ids"], response], dim=1)
    mask = torch.cat([enc["attention_mask"], response_mask.long()], dim=1)
    return Rollout(ids, mask, prompt_len, response_mask, is_eos.any(dim=1))


@dataclass
class ScoredRollout:
    old_logprobs: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor | None  # GAE's value targets; None with group advantages (no value head trained)
    scores: torch.Tensor
    kl: torch.Tensor  # per token, masked
    kl_coef: float
    lengths: torch.Tensor
    ended: torch.Tensor

    @property
    def kl_mean(self) -> float:
        return self.kl.sum(1).mean().item()

    def metrics(self) -> dict:
        return {
            "reward": self.scores.mean().item(),
            "kl": self.kl_mean,
            "objective": (self.scores - self.kl_coef * self.kl.sum(1)).mean().item(),
            "response_length": self.lengths.float().mean().item(),
            "eos_share": self.ended.float().mean().item(),
        }


@torch.no_grad()
def score_rollout(
    shared: SharedModel,
    ro: Rollout,
    raw_scores: torch.Tensor,
    kl_coef: float,
    config,
    total: Total | None = None,
) -> ScoredRollout:
    """Scores, KL and advantages of a rollout; `total` sums over all processes' rollouts (whitening is global)."""
    mask = ro.response_mask
    old_logprobs, old_values, _ = policy_forward(shared, ro.input_ids, ro.attention_mask, ro.prompt_len)
    ref = reference_logprobs(shared, ro.input_ids, ro.attention_mask, ro.prompt_len)
    scores = raw_scores.float().to(mask.device)
    if config.no_eos_penalty is not None:
        scores = torch.where(ro.ended, scores, scores + config.no_eos_penalty)
    scores = scores.clamp(-config.reward_clip, config.reward_clip)
    kl = kl_estimate(old_logprobs, ref, config.kl_estimator) * mask
    old_values = old_values.float() * mask
    returns: torch.Tensor | None = None
    if config.advantage == "group":
        # every token of an answer shares its sequence advantage; group means are already 0, so whitening scales
        sequence = leave_one_out(scores - kl_coef * kl.sum(1), config.group_size)
        advantages = sequence[:, None] * mask
    else:
        rewards = token_rewards(scores, kl, mask, kl_coef)
        advantages, returns = gae(rewards, old_values, mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = masked_whiten(advantages, mask, shift_mean=config.advantage != "group", total=total)
    return ScoredRollout(
        old_logprobs, old_values, advantages, returns, scores, kl, kl_coef, mask.sum(1), ro.ended
    )


@dataclass
class StepStats:
    policy_loss: float
    value_loss: float
    entropy: float
    clip_fraction: float
    approx_kl: float
    explained_variance: float
    updates: int
    early_stopped: bool

    def metrics(self) -> dict:
        return {k: float(v) for k, v in self.__dict__.items()}


def ppo_update(
    shared: SharedModel, module, optimizer, accelerator, ro: Rollout, sc: ScoredRollout, config, params
) -> StepStats:
    """Several epochs of clipped PPO over minibatches of the rollout; an epoch stops early past `stop_kl`.

    Under several processes each holds its share of the rollout (`config.minibatch` is the per-process
    minibatch) and the early stop is decided on the mean over all of them, so every process takes the same
    number of gradient steps (a process that stopped alone would leave the others waiting in all-reduce)."""
    totals: dict[str, list[float]] = {"pg": [], "vf": [], "ent": [], "clip": [], "kl": []}
    batch = ro.input_ids.shape[0]
    updates, early = 0, False
    for _ in range(config.ppo_epochs):
        epoch_kl = []
        for idx in torch.randperm(batch).split(config.minibatch):
            mask = ro.response_mask[idx]
            with accelerator.accumulate(module):
                logprobs, values, entropy = policy_forward(
                    shared, ro.input_ids[idx], ro.attention_mask[idx], ro.prompt_len, module
                )
                pg, clip_frac, approx_kl = policy_loss(
                    logprobs, sc.old_logprobs[idx], sc.advantages[idx], mask, config.clip
                )
                vf = (
                    value_loss(values.float(), sc.old_values[idx], sc.returns[idx], mask, config.vf_clip)
                    if sc.returns is not None
                    else torch.zeros((), device=values.device)
                )
                ent = masked_mean(entropy, mask)
                loss = pg + config.vf_coef * vf - config.ent_coef * ent
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            updates += 1
            for key, value in (("pg", pg), ("vf", vf), ("ent", ent), ("clip", clip_frac), ("kl", approx_kl)):
                totals[key].append(value.item())
            epoch_kl.append(approx_kl.item())
        epoch_mean = accelerator.reduce(torch.tensor(sum(epoch_kl) / len(epoch_kl)), "mean").item()
        if epoch_mean > config.stop_kl:
            early = True
            break
    mean = {k: sum(v) / len(v) for k, v in totals.items()}
    ev = explained_variance(sc.old_values, sc.returns, ro.response_mask) if sc.returns is not None else 0.0
    return StepStats(mean["pg"], mean["vf"], mean["ent"], mean["clip"], mean["kl"], ev, updates, early)
