"""DPO over ranked sets (`rankloop dpo --trainer sets`, the default): every answer of a set goes through the
policy and the reference once, its implicit reward is beta * (log pi(y|x) - log pi_ref(y|x)), and the loss is
Bradley-Terry over the set's consensus pairs: -log sigmoid(r_chosen - r_rejected), averaged over the batch's
pairs. That is trl's sigmoid DPO loss on the same pairs; trl runs each answer once per pair it is in (a set of 4
answers with 6 pairs: 12 sequences), this runs it once (4). The reference is the base with the adapter off.
`length_weight` (R-DPO's alpha) adds alpha x (chosen's tokens - rejected's tokens) to each pair's margin, so a
preference that length explains does not push answers longer. `kl_weight` adds the KL from the reference along the labeled answers (each token's exact KL between the two
next-token distributions, summed per answer, averaged over the step's answers); every step logs that KL.
`tail_average` replaces the trained adapter by the mean of its weights over the last share of the steps.

    trained, final = train_on_sets(model, tokenizer, groups, config, reporter)   # model: a trainable PeftModel
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

import torch
from accelerate import Accelerator
from peft import PeftModel

from models.generation import render_prompts
from models.loading import step_autocast
from models.logprobs import Row, answer_distributions, exact_kl, fit_row, per_row, written
from rlhf.train.configs import DPOConfig
from rlhf.train.losses import ranking_batch_loss
from rlhf.train.progress import Reporter
from rlhf.train.reward import shard_batches
from rlhf.train.reward_data import Group
from rlhf.train.scoring import fit_history, render_dialogue

EVAL_BATCH_SETS = 4  # held-out sets scored per forward pass (no gradients: memory allows more than training)


def set_rows(group: Group, tokenizer, max_length: int) -> list[Row]:
    """One (prompt ids, answer ids) row per answer: the answer in the chat template up to its end-of-turn
    token, as the policy writes it after the rendered prompt."""
    history = fit_history(tokenizer, group.prompt, group.texts, max_length)
    prompt = tokenizer(render_prompts(tokenizer, [history])[0], add_special_tokens=False)["input_ids"]
    rows = []
    for text in group.texts:
        full = tokenizer(render_dialogue(tokenizer, history, text), add_special_tokens=False)["input_ids"]
        rows.append(fit_row(prompt, full[len(prompt) :], max_length))
    return rows


def offsets(groups: list[Group]) -> list[int]:
    """Where each set's answers start in the batch's rows."""
    starts, at = [], 0
    for g in groups:
        starts.append(at)
        at += len(g.texts)
    return starts


def set_pairs(groups: list[Group]) -> torch.Tensor:
    """The sets' consensus (chosen, rejected) pairs as indices into the batch's rows ([pairs, 2])."""
    pairs = [(o + c, o + r) for o, g in zip(offsets(groups), groups, strict=True) for c, r, _, _ in g.pairs]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def batch_rows(groups: list[Group], tokenizer, max_length: int) -> tuple[list[Row], torch.Tensor]:
    """Every answer of the batch's sets once, and the (chosen, rejected) pairs as indices into them."""
    return [row for g in groups for row in set_rows(g, tokenizer, max_length)], set_pairs(groups)


def top_rows(groups: list[Group]) -> torch.Tensor:
    """Indices (into `batch_rows`' rows) of each set's best answers: those its consensus pairs prefer and never
    reject (more than one where the top is tied)."""
    tops = [
        o + c
        for o, g in zip(offsets(groups), groups, strict=True)
        for c in sorted({c for c, _, _, _ in g.pairs} - {r for _, r, _, _ in g.pairs})
    ]
    return torch.tensor(tops, dtype=torch.long)


def length_gaps(rows: list[Row], pairs: torch.Tensor) -> torch.Tensor:
    """Chosen minus rejected answer length in tokens, per pair (float, on the pairs' device)."""
    lengths = torch.tensor([len(answer) for _, answer in rows], dtype=torch.float, device=pairs.device)
    return lengths[pairs[:, 0]] - lengths[pairs[:, 1]]


def pair_margins(rewards: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Chosen minus rejected implicit reward, per pair."""
    return rewards[pairs[:, 0]] - rewards[pairs[:, 1]]


class Scored(NamedTuple):
    policy: torch.Tensor  # per answer, log pi(y|x) (with gradients)
    reference: torch.Tensor  # per answer, log pi_ref(y|x)
    kl: torch.Tensor  # per answer, the exact per-token KL(pi || pi_ref) summed over its tokens


def score_rows(wrapped, unwrapped: PeftModel, rows: list[Row], pad: int, *, kl_grad: bool) -> Scored:
    """The batch's answers through the reference (adapter off, no gradients) and the policy, once each; the KL
    carries gradients only where it is trained (`kl_grad`), else it is only logged."""
    with torch.no_grad(), unwrapped.disable_adapter():
        reference, targets, row = answer_distributions(unwrapped, rows, pad_id=pad)
    policy, _, _ = answer_distributions(wrapped, rows, pad_id=pad)

    def summed(values: torch.Tensor) -> torch.Tensor:
        return per_row(values, row, len(rows))

    with torch.set_grad_enabled(kl_grad):
        kl = summed(exact_kl(policy, reference))
    return Scored(summed(written(policy, targets)), summed(written(reference, targets)), kl)


class SetLoss(NamedTuple):
    loss: torch.Tensor
    rewards: torch.Tensor  # implicit rewards, beta * (log pi - log pi_ref), per answer
    pairs: torch.Tensor  # (chosen, rejected) indices
    sft_nll: torch.Tensor | None  # the best answers' mean per-token NLL (sft_weight > 0)
    kl: torch.Tensor | None = None  # the answers' mean KL from the reference (when scored)
    length_gap: float = 0.0  # chosen minus rejected answer tokens, mean over the pairs (labels' length bias)


def set_loss(
    policy: torch.Tensor,
    reference: torch.Tensor,
    rows: list[Row],
    groups: list[Group],
    config: DPOConfig,
    kl: torch.Tensor | None = None,
) -> SetLoss:
    """The step's loss: pair_weight x DPO's loss over the sets' pairs (R-DPO's with length_weight: the pair's
    margin plus alpha x its length gap in tokens) plus sft_weight x the per-token negative log-likelihood of each
    set's best answers (RPO; alone, rejection-sampling fine-tuning on the labelers' picks) plus kl_weight x the
    answers' mean KL from the reference (`kl`, per answer)."""
    pairs = set_pairs(groups).to(policy.device)
    rewards = config.beta * (policy - reference)
    # ranking_batch_loss subtracts its margin: R-DPO's +alpha x (|chosen| - |rejected|) is a margin of minus that
    gaps = length_gaps(rows, pairs)
    margin = -config.length_weight * gaps if config.length_weight else None
    loss = (
        config.pair_weight * ranking_batch_loss(rewards, pairs, margin, smoothing=config.label_smoothing)
        if config.pair_weight
        else policy.new_zeros(())
    )
    tops = top_rows(groups).to(policy.device)  # may be empty: labelers' majorities can form a cycle
    nll = None
    if config.sft_weight and len(tops):
        lengths = torch.tensor([len(rows[i][1]) for i in tops.tolist()], device=policy.device)
        nll = -(policy[tops] / lengths.clamp(min=1)).mean()
        loss = loss + config.sft_weight * nll
    mean_kl = kl.mean() if kl is not None and len(kl) else None
    if config.kl_weight and mean_kl is not None:
        loss = loss + config.kl_weight * mean_kl
    gap = gaps.mean().item() if len(gaps) else 0.0
    return SetLoss(loss, rewards, pairs, nll, mean_kl, gap)


def step_figures(parts: SetLoss) -> dict[str, float]:
    """What a step logs: the loss, the share of pairs whose implicit rewards are ordered right, their margin, the
    chosen answers' extra tokens over the rejected ones (`length_gap`), and the best answers' NLL where it is
    trained."""
    margins = pair_margins(parts.rewards, parts.pairs).detach()
    figures = {
        "loss": parts.loss.item(),
        "reward_accuracy": (margins > 0).float().mean().item(),
        "reward_margin": margins.mean().item(),
        "length_gap": parts.length_gap,
    }
    if parts.kl is not None:
        figures["kl"] = parts.kl.item()
    return figures if parts.sft_nll is None else {**figures, "sft_nll": parts.sft_nll.item()}


def implicit_accuracy(
    model: PeftModel, tokenizer, groups: list[Group], config: DPOConfig
) -> dict[str, float]:
    """The trained policy's implicit reward model, beta * (log pi - log pi_ref), on held-out sets: the share of
    their consensus pairs it orders as the labelers did (the held-out accuracy a reward model reports), and the
    mean margin. Each set's answers run once through policy and reference, without gradients."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    margins: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(groups), EVAL_BATCH_SETS):
            rows, pairs = batch_rows(groups[start : start + EVAL_BATCH_SETS], tokenizer, config.max_length)
            if not len(pairs):
                continue
            scored = score_rows(model, model, rows, pad, kl_grad=False)
            rewards = config.beta * (scored.policy - scored.reference)
            pairs = pairs.to(rewards.device)
            margins.append(pair_margins(rewards, pairs))
    every = torch.cat(margins) if margins else torch.zeros(0)
    return {
        "heldout_accuracy": (every > 0).float().mean().item() if len(every) else float("nan"),
        "heldout_margin": every.mean().item() if len(every) else float("nan"),
        "heldout_pairs": len(every),
        "heldout_sets": sum(1 for g in groups if g.pairs),
    }


def train_on_sets(
    model: PeftModel, tokenizer, groups: list[Group], config: DPOConfig, reporter: Reporter
) -> tuple[PeftModel, dict[str, Any]]:
    """DPO steps of `config.batch_sets` sets (global over processes), in `config.mixed_precision`'s autocast;
    returns the trained model and the last step's figures with the mean loss."""
    groups = [g for g in groups if g.pairs]
    accelerator = Accelerator(cpu=config.device == "cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    rank, world = accelerator.process_index, accelerator.num_processes
    steps = config.epochs * len(shard_batches(groups, config.batch_sets, rank, world))
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    unwrapped: PeftModel = accelerator.unwrap_model(wrapped)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rng = random.Random(config.seed)
    reporter.start(steps, "dpo")
    wrapped.train()
    losses: list[float] = []
    figures: dict[str, float] = {}
    average = TailAverage(params, steps, config.tail_average)
    for _ in range(config.epochs):
        order = groups[:]
        rng.shuffle(order)
        for batch in shard_batches(order, config.batch_sets, rank, world):
            rows, _ = batch_rows(batch, tokenizer, config.max_length)
            with step_autocast(config.mixed_precision, config.device, accelerator.device):
                scored = score_rows(wrapped, unwrapped, rows, pad, kl_grad=config.kl_weight > 0)
                parts = set_loss(scored.policy, scored.reference, rows, batch, config, scored.kl)
            accelerator.backward(parts.loss)
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            figures = {"step": len(losses) + 1, **step_figures(parts)}
            losses.append(figures["loss"])
            reporter.step(figures)
            reporter.log(figures)
            average.add(len(losses))
    average.apply()
    wrapped.eval()
    return unwrapped, {**figures, "loss": sum(losses) / max(1, len(losses))}


class TailAverage:
    """The running mean of `params` over the steps after the first `(1 - share) x steps` (Polyak-Ruppert tail
    averaging); `apply` writes it into the parameters. share 0: nothing is kept, the last step's weights stay."""

    def __init__(self, params: list[torch.nn.Parameter], steps: int, share: float):
        self.params, self.count = params, 0
        self.first = steps - round(share * steps) + 1 if share > 0 else steps + 1
        self.sums: list[torch.Tensor] = []

    def add(self, step: int) -> None:
        """After optimizer step `step` (1-based): add the weights to the mean when the step is in the tail."""
        if step < self.first:
            return
        with torch.no_grad():
            if not self.sums:
                self.sums = [p.detach().float().clone() for p in self.params]
            else:
                for total, p in zip(self.sums, self.params, strict=True):
                    total.add_(p.detach().float())
        self.count += 1

    def apply(self) -> None:
        """Replace the weights by the tail's mean (a no-op when at most one step was added)."""
        if self.count < 2:
            return
        with torch.no_grad():
            for total, p in zip(self.sums, self.params, strict=True):
                p.copy_((total / self.count).to(p.dtype))
