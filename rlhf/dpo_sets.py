"""DPO over ranked sets (`rankloop dpo --trainer sets`, the default): every answer of a set goes through the
policy and the reference once, its implicit reward is beta * (log pi(y|x) - log pi_ref(y|x)), and the loss is
Bradley-Terry over the set's consensus pairs: -log sigmoid(r_chosen - r_rejected), averaged over the batch's
pairs. That is trl's sigmoid DPO loss on the same pairs; trl runs each answer once per pair it is in (a set of 4
answers with 6 pairs: 12 sequences), this runs it once (4). The reference is the base with the adapter off.

    trained, final = train_on_sets(model, tokenizer, groups, config, reporter)   # model: a trainable PeftModel
"""

from __future__ import annotations

import random
from typing import Any

import torch
from accelerate import Accelerator
from peft import PeftModel

from models.generation import render_prompts
from models.logprobs import Row, answer_logprobs, fit_row
from rlhf.configs import DPOConfig
from rlhf.losses import ranking_batch_loss
from rlhf.progress import Reporter
from rlhf.reward import shard_batches
from rlhf.reward_data import Group
from rlhf.scoring import render_dialogue


def set_rows(group: Group, tokenizer, max_length: int) -> list[Row]:
    """One (prompt ids, answer ids) row per answer: the answer in the chat template up to its end-of-turn
    token, as the policy writes it after the rendered prompt."""
    prompt = tokenizer(render_prompts(tokenizer, [group.prompt])[0], add_special_tokens=False)["input_ids"]
    rows = []
    for text in group.texts:
        full = tokenizer(render_dialogue(tokenizer, group.prompt, text), add_special_tokens=False)[
            "input_ids"
        ]
        rows.append(fit_row(prompt, full[len(prompt) :], max_length))
    return rows


def batch_rows(groups: list[Group], tokenizer, max_length: int) -> tuple[list[Row], torch.Tensor]:
    """Every answer of the batch's sets once, and the (chosen, rejected) pairs as indices into them."""
    rows: list[Row] = []
    pairs: list[tuple[int, int]] = []
    for g in groups:
        offset = len(rows)
        rows.extend(set_rows(g, tokenizer, max_length))
        pairs.extend((offset + c, offset + r) for c, r, _, _ in g.pairs)
    return rows, torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)


def step_figures(loss: torch.Tensor, rewards: torch.Tensor, pairs: torch.Tensor) -> dict[str, float]:
    """What a step logs: the loss, the share of pairs whose implicit rewards are ordered right, their margin."""
    margins = rewards[pairs[:, 0]] - rewards[pairs[:, 1]]
    return {
        "loss": loss.item(),
        "reward_accuracy": (margins > 0).float().mean().item(),
        "reward_margin": margins.mean().item(),
    }


def implicit_accuracy(
    model: PeftModel, tokenizer, groups: list[Group], config: DPOConfig
) -> dict[str, float]:
    """The trained policy's implicit reward model, beta * (log pi - log pi_ref), on held-out sets: the share of
    their consensus pairs it orders as the labelers did (the held-out accuracy a reward model reports), and the
    mean margin. Each set's answers run once through policy and reference, without gradients."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    margins: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(groups), 4):
            rows, pairs = batch_rows(groups[start : start + 4], tokenizer, config.max_length)
            if not len(pairs):
                continue
            policy = answer_logprobs(model, rows, pad_id=pad)
            with model.disable_adapter():
                reference = answer_logprobs(model, rows, pad_id=pad)
            rewards = config.beta * (policy - reference)
            pairs = pairs.to(rewards.device)
            margins.append(rewards[pairs[:, 0]] - rewards[pairs[:, 1]])
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
    """DPO steps of `config.batch_sets` sets (global over processes); returns the trained model and the last
    step's figures with the mean loss."""
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
    for _ in range(config.epochs):
        order = groups[:]
        rng.shuffle(order)
        for batch in shard_batches(order, config.batch_sets, rank, world):
            rows, pairs = batch_rows(batch, tokenizer, config.max_length)
            pairs = pairs.to(accelerator.device)
            with torch.no_grad(), unwrapped.disable_adapter():
                reference = answer_logprobs(unwrapped, rows, pad_id=pad)
            policy = answer_logprobs(wrapped, rows, pad_id=pad)
            rewards = config.beta * (policy - reference)
            loss = ranking_batch_loss(rewards, pairs)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            figures = {"step": len(losses) + 1, **step_figures(loss.detach(), rewards.detach(), pairs)}
            losses.append(figures["loss"])
            reporter.step(figures)
            reporter.log(figures)
    wrapped.eval()
    return unwrapped, {**figures, "loss": sum(losses) / max(1, len(losses))}
