"""Reward-model stage: train a LoRA reward adapter + score head on the shared base from the store's rankings.

    rankloop reward [--epochs 1] [--trainer ranking|pairs|trl] [--eval-fraction 0.1] ...
    python -m rlhf.train.reward --home runs            # the same; also runs under `accelerate launch`

Efficient ranking batches (InstructGPT): every completion of a ranked set is scored once and all of the set's
pairs take their Bradley-Terry loss from those scores. `--trainer pairs` scores the two texts of every pair
separately (same loop), and `--trainer trl` trains with `trl.RewardTrainer` on the exploded pairs (the baseline).
The model is registered in the store as r<K> with its held-out metrics and a snapshot of its data.

`--ensemble K` trains K-1 more members after the model, one after another, each with its own adapter, head and
seed (`seed + k`) on the same sets, saved in the model's folder under `members/k` (continuing the parent's member
k where the run continues a model that has one). Only uncertainty selection reads them (rlhf/select/selection.py labels
next where they disagree); PPO and evaluation read the model itself.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from peft import LoraConfig, PeftModel, get_peft_model
from sqlmodel import Session
from transformers import get_scheduler

from labeler.labels.dataset import load_set_rankings
from labeler.labels.gold import fit_with_gold
from labeler.labels.hacking import ComplaintSet, hacking_suspects, sets_with_complaints
from labeler.labels.reliability import Reliability
from labeler.records.reward_models import (
    RewardFacts,
    RewardRef,
    find_reward_model,
    next_reward_name,
    register_reward_model,
)
from labeler.store.db import default_url, make_engine
from models.adapters import LORA_TARGETS
from models.loading import load_base, step_autocast
from rlhf.train.configs import RewardConfig
from rlhf.train.information import head_precision, save_information
from rlhf.train.losses import below_reference_loss, ranking_batch_loss
from rlhf.train.progress import ConsoleReporter, Reporter
from rlhf.train.reward_data import (
    Group,
    explode,
    load_groups,
    read_seen,
    seen_counts,
    split_by_prompt,
    unseen,
    write_seen,
    write_snapshot,
)
from rlhf.train.reward_eval import evaluate, score_sets
from rlhf.train.scoring import (
    RewardMeta,
    RewardScorer,
    ScoreHead,
    encode,
    fit_history,
    load_head,
    load_meta,
    member_folder,
    render_dialogue,
    save_reward_model,
)

logger = logging.getLogger(__name__)


@dataclass
class RewardResult:
    name: str
    path: Path
    metrics: dict
    facts: RewardFacts
    train_sets: int
    heldout_sets: int
    seconds: float


@dataclass(frozen=True)
class Parent:
    """The reward model a run keeps training (`continue_from`): its name, folder and the sets it has seen."""

    name: str
    folder: Path
    seen: dict[int, int]


def parent_model(ref: RewardRef | None, config: RewardConfig) -> Parent | None:
    """The model `continue_from` names, checked: None for a new model. `latest` falls back to a new model
    (logged) where there is none yet or the newest cannot be continued; a named one that cannot is an error."""
    wanted = config.continue_from
    if not wanted:
        return None
    named = wanted != "latest"
    problem = None
    if ref is None:
        problem = f"no reward model {wanted!r} in the store" if named else "no reward model yet"
    elif ref.base_model != config.model:
        problem = f"{ref.name} was trained on base {ref.base_model!r}, this run uses {config.model!r}"
    elif config.full_finetune or not ref.adapter_path or load_meta(Path(ref.adapter_path)).full_finetune:
        problem = "continuing works with LoRA reward models only (full_finetune is off on both)"
    if problem is None and ref is not None and ref.adapter_path:
        return Parent(ref.name, Path(ref.adapter_path), read_seen(Path(ref.adapter_path)))
    if named:
        raise ValueError(f"continue_from={wanted}: {problem}")
    logger.warning("continue_from=latest: %s; training a new reward model", problem)
    return None


def build_scorer(config: RewardConfig, parent: Parent | None = None) -> tuple[RewardScorer, object]:
    """A new LoRA adapter and score head on the base (or all weights with `full_finetune`), or the `parent`
    model's adapter and head, trainable."""
    base, tokenizer = load_base(config.model, home=Path(config.home), device=config.device)
    base.config.use_cache = False
    model: Any
    hidden = base.config.hidden_size
    if parent is not None:
        model = PeftModel.from_pretrained(base, str(parent.folder), adapter_name="reward", is_trainable=True)
        return RewardScorer(model, load_head(parent.folder, hidden).to(base.device)), tokenizer
    if config.full_finetune:
        model = base
        model.requires_grad_(True)
    else:
        lora = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05, target_modules=LORA_TARGETS
        )
        model = get_peft_model(base, lora, adapter_name="reward")
    init_std = getattr(base.config, "initializer_range", 0.02)
    head = ScoreHead(hidden, init_std=init_std, heads=config.heads).to(base.device)
    return RewardScorer(model, head), tokenizer


@dataclass
class Batch:
    """One optimizer step's inputs: every unique answer encoded once, (chosen, rejected) index pairs, their
    margins and tie flags, and the answers of "none acceptable" sets (indices into the encoded answers)."""

    enc: dict
    pairs: torch.Tensor  # [P, 2]
    margins: torch.Tensor  # [P]
    ties: torch.Tensor  # [P] bool: a tie pair (margin 0 with keep_ties)
    negatives: torch.Tensor  # [N]
    weights: torch.Tensor | None = None  # [P] per-pair weights (labeler_weights=reliability)
    pair_sets: torch.Tensor | None = None  # [P] the set id of each pair (for the members' bootstrap shares)
    negative_sets: torch.Tensor | None = None  # [N] the set id of each "none acceptable" answer

    def share(self, pair_keep: torch.Tensor, neg_keep: torch.Tensor) -> Batch:
        """The pairs and negatives the masks keep (bools over `pair_sets` and `negative_sets`)."""
        return Batch(
            self.enc,
            self.pairs[pair_keep],
            self.margins[pair_keep],
            self.ties[pair_keep],
            self.negatives[neg_keep],
            None if self.weights is None else self.weights[pair_keep],
        )


def group_batch(groups: list[Group], tokenizer, config: RewardConfig, device) -> Batch:
    texts: list[str] = []
    pairs: list[tuple[int, int]] = []
    margins: list[float] = []
    negatives: list[int] = []
    weights: list[float] = []
    pair_sets: list[int] = []
    negative_sets: list[int] = []
    for g in groups:
        offset = len(texts)
        prompt = fit_history(tokenizer, g.prompt, g.texts, config.max_length)
        texts.extend(render_dialogue(tokenizer, prompt, t) for t in g.texts)
        for c, r, margin, _ in g.pairs:
            pairs.append((offset + c, offset + r))
            margins.append(margin)
        weights.extend(g.weights or [1.0] * len(g.pairs))
        negatives.extend(offset + k for k in g.negatives)
        pair_sets.extend([g.set_id] * len(g.pairs))
        negative_sets.extend([g.set_id] * len(g.negatives))
    margin_t = torch.tensor(margins, device=device, dtype=torch.float32)
    weighted = any(g.weights for g in groups)
    return Batch(
        encode(tokenizer, texts, config.max_length, device),
        torch.tensor(pairs, device=device, dtype=torch.long).reshape(-1, 2),
        margin_t,
        (margin_t == 0) & config.keep_ties,
        torch.tensor(negatives, device=device, dtype=torch.long),
        torch.tensor(weights, device=device, dtype=torch.float32) if weighted else None,
        torch.tensor(pair_sets, device=device, dtype=torch.long),
        torch.tensor(negative_sets, device=device, dtype=torch.long),
    )


def in_bootstrap(set_id: int, member: int, seed: int) -> bool:
    """Whether score-head `member` trains on set `set_id`: member 0 on every set, each other on a fixed share
    of about 63% (the share of distinct items in a bootstrap sample), the same in every run and round."""
    if member == 0:
        return True
    digest = hashlib.sha1(f"{seed}:{member}:{set_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < 1 - math.exp(-1)


def members_loss(members: torch.Tensor, batch: Batch, config: RewardConfig) -> torch.Tensor:
    """The mean over score-head members of each one's loss on its bootstrap share of the batch's sets; a
    member with nothing in this batch adds nothing. `members`: [T, heads]."""
    assert batch.pair_sets is not None and batch.negative_sets is not None
    losses = []
    for k in range(members.shape[1]):
        pair_keep, neg_keep = (
            torch.tensor([in_bootstrap(i, k, config.seed) for i in ids.tolist()], dtype=torch.bool)
            for ids in (batch.pair_sets, batch.negative_sets)
        )
        share = batch.share(pair_keep.to(members.device), neg_keep.to(members.device))
        if len(share.pairs) or len(share.negatives):
            losses.append(batch_loss(members[:, k], share, config))
    return torch.stack(losses).mean()


def batch_loss(scores: torch.Tensor, batch: Batch, config: RewardConfig) -> torch.Tensor:
    """Bradley-Terry (Davidson's with ties when `keep_ties`) over the pairs, plus the below-reference term for
    the answers of "none acceptable" sets; weighted by how many pairs and answers each part has."""
    parts, weights = [], []
    if len(batch.pairs):
        parts.append(
            ranking_batch_loss(
                scores,
                batch.pairs,
                batch.margins if config.use_margin else None,
                config.center_rewards,
                batch.ties if config.keep_ties else None,
                math.log(config.tie_strength),
                batch.weights,
            )
        )
        weights.append(len(batch.pairs))
    if len(batch.negatives):
        parts.append(below_reference_loss(scores[batch.negatives]))
        weights.append(len(batch.negatives))
    total = parts[0] * weights[0]
    for part, weight in zip(parts[1:], weights[1:], strict=True):
        total = total + part * weight
    return total / sum(weights)


def shard_batches(groups: list[Group], per_step: int, rank: int, world: int) -> list[list[Group]]:
    """Process `rank`'s share of each optimizer step. `per_step` is the global batch: the groups are cut into
    batches of `per_step` and each is dealt round-robin over the `world` processes, so N processes take the
    steps one process would (a last batch that does not split evenly repeats some of its own groups), every
    process takes the same number of them with equal shares, and none is left waiting in a gradient
    all-reduce."""
    if per_step % world:
        raise ValueError(
            f"batch_sets={per_step} does not split evenly over {world} processes: use a multiple of {world}"
        )
    shares = []
    for start in range(0, len(groups), per_step):
        batch = groups[start : start + per_step]
        batch += batch[: -len(batch) % world] if len(batch) >= world else [batch[0]] * (world - len(batch))
        shares.append(batch[rank::world])
    return shares


def train_loop(
    scorer: RewardScorer,
    tokenizer,
    train: list[Group],
    config: RewardConfig,
    reporter: Reporter,
    stage: str = "reward training",
) -> None:
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, cpu=config.device == "cpu")
    params = [p for p in scorer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    rng = random.Random(config.seed)
    per_step = config.batch_sets
    rank, world = accelerator.process_index, accelerator.num_processes
    steps = config.epochs * len(shard_batches(train, per_step, rank, world))  # this process's steps
    updates = max(1, steps * world // config.grad_accum)  # accelerate steps the schedule once per process
    schedule = get_scheduler(
        config.lr_schedule,
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * updates),
        num_training_steps=updates,
    )
    scorer, optimizer, schedule = accelerator.prepare(scorer, optimizer, schedule)
    reporter.start(steps, stage)
    scorer.train()
    step = 0
    for _ in range(config.epochs):
        order = train[:]
        rng.shuffle(order)
        for batch in shard_batches(order, per_step, rank, world):
            inputs = group_batch(batch, tokenizer, config, accelerator.device)
            with accelerator.accumulate(scorer):
                with step_autocast(config.mixed_precision, config.device, accelerator.device):
                    # through the (possibly distributed) wrapper, so gradients are synchronised
                    members = scorer(inputs.enc["input_ids"], inputs.enc["attention_mask"], members=True)
                members = members.float()
                scores = members.mean(dim=-1)
                single = members.shape[1] == 1
                loss = batch_loss(scores, inputs, config) if single else members_loss(members, inputs, config)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            step += 1
            strict = inputs.pairs[~inputs.ties]
            accuracy = (
                (scores[strict[:, 0]] > scores[strict[:, 1]]).float().mean().item() if len(strict) else 0.0
            )
            metrics = {"step": step, "loss": loss.item(), "accuracy": accuracy}
            reporter.step(metrics)
            if step % config.log_every == 0 or step == steps:
                reporter.log(metrics)
    scorer.eval()


def hacking_review(scorer: RewardScorer, tokenizer, complaints: list[ComplaintSet], max_length: int) -> dict:
    """The reward-hacking review list for this model: answers it scores first in their set that labelers
    flagged or ranked last (labeler/labels/hacking.py), and how many of the sets with such answers it checked."""
    scores = score_sets(scorer, tokenizer, [(s.prompt, s.texts) for s in complaints], max_length)
    suspects = hacking_suspects(complaints, scores)
    return {
        "sets_checked": len(complaints),
        "suspects": len(suspects),
        "items": [x.to_dict() for x in suspects],
    }


class NothingNew(ValueError):
    """Continuing `name` with no set it has not seen: there is nothing new to learn (a round then uses it)."""

    def __init__(self, name: str):
        super().__init__(
            f"no sets ranked since {name} was trained: rank more sets, or train without continue_from"
        )
        self.name = name


@dataclass
class RewardData:
    """What one run trains and evaluates on, read in one short transaction: the new model's name, the training
    groups (for a continued model: the new ones, then the `replayed` ones it has met), every held-out group,
    and the sets it reviews for hacking."""

    name: str
    train: list[Group]
    heldout: list[Group]
    complaints: list[ComplaintSet]
    parent: Parent | None
    seen: dict[int, int]  # the sets the model has met once this run is done (saved with it)
    reliability: Reliability | None = None  # the labeler reliability fit (labeler_weights=reliability)
    # every training group, met before or not: the head's precision is over all of them (rlhf/select/design.py)
    labeled: list[Group] = field(default_factory=list)
    replayed: int = 0  # training groups a continued model has met before


def replayed(labeled: Sequence[Group], new: Sequence[Group], share: float, seed: int) -> list[Group]:
    """The training sets a continued model has met (`labeled` but not `new`) that it trains on again: `share`
    of them, drawn at random with `seed`, in their stored order. Without them a model continued round after
    round on each round's sets alone forgets the earlier ones."""
    fresh = {g.set_id for g in new}
    met = [g for g in labeled if g.set_id not in fresh]
    if share >= 1:
        return met
    keep = set(random.Random(seed).sample(range(len(met)), round(share * len(met))))
    return [g for i, g in enumerate(met) if i in keep]


def train_members(config: RewardConfig, data: RewardData, folder: Path, reporter: Reporter) -> list[float]:
    """Ensemble members 1..K-1 (`config.ensemble`), one after another, each from seed `seed + k` on the run's
    sets, continuing the parent's member k where it has one; saved under `folder/members/k`. Returns each
    member's held-out accuracy."""
    accuracies = []
    for k in range(1, config.ensemble):
        member = replace(config, seed=config.seed + k)
        parent = None
        if data.parent is not None and member_folder(data.parent.folder, k).is_dir():
            parent = replace(data.parent, folder=member_folder(data.parent.folder, k))
        torch.manual_seed(member.seed)
        scorer, tokenizer = build_scorer(member, parent)
        train_loop(
            scorer, tokenizer, data.train, member, reporter, f"ensemble member {k + 1}/{config.ensemble}"
        )
        reporter.start(1, f"member {k + 1} evaluation and saving")
        metrics = evaluate(scorer, tokenizer, data.heldout or data.train, config.max_length)
        accuracies.append(round(metrics.get("accuracy", 0.0), 4))
        if PartialState().is_main_process:
            std = metrics.get("reward_std", 1.0) if config.normalize else 1.0
            meta = RewardMeta(base_model=config.model, reward_std=std)
            save_reward_model(member_folder(folder, k), scorer.model, scorer.head, meta)
        reporter.step()
    return accuracies


def read_data(engine, config: RewardConfig) -> RewardData:
    # the cross-field rules were checked when the config was made (rlhf/train/configs.reward_rules)
    wanted = None if config.continue_from == "latest" else config.continue_from
    with Session(engine) as session:
        ranked = load_set_rankings(session=session)  # read once for the training data and the review list
        fit = None
        if config.labeler_weights == "reliability":
            fit = fit_with_gold(session=session, sets=ranked, flagged=config.flagged)
        groups = load_groups(
            session=session,
            settings=config.pair_settings(),
            include_imported=config.include_imported,
            none_acceptable=config.none_acceptable,
            sets=ranked,
            reliability=fit,
        )
        name = next_reward_name(session=session)
        complaints = sets_with_complaints(session=session, sets=ranked)
        continued = find_reward_model(session=session, name=wanted) if config.continue_from else None
    parent = parent_model(continued, config)
    seen = parent.seen if parent else {}
    train, heldout = split_by_prompt(groups, config.eval_fraction, config.heldout_sources)
    labeled, new = train, unseen(train, seen)
    if not new and parent:
        raise NothingNew(parent.name)
    train = new + (replayed(labeled, new, config.replay, config.seed) if parent else [])
    if config.max_pairs:
        train = train[: config.max_pairs]
    if not train:
        raise ValueError("no usable rankings to train on: rank some sets (or import pairs) first")
    # the review: the ranked sets this model meets first (with or without consensus pairs)
    counts = {s.set_id: len(s.rankings) for s in ranked}
    complaints = [c for c in complaints if seen.get(c.set_id) != counts[c.set_id]]
    seen_now = {**seen, **seen_counts(train + heldout), **{c.set_id: counts[c.set_id] for c in complaints}}
    again = max(0, len(train) - len(new))  # counted before pairs are exploded: groups, as `new`
    if config.trainer != "ranking":
        train = explode(train)
    return RewardData(name, train, heldout, complaints, parent, seen_now, fit, labeled, again)


def run(config: RewardConfig, *, reporter: Reporter | None = None, job_id: int | None = None) -> RewardResult:
    """Load data, train, evaluate, save and register. Returns the new model's name, folder and metrics."""
    reporter = reporter or ConsoleReporter()
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    engine = make_engine(config.db or default_url(Path(config.home)))
    data = read_data(engine, config)
    name, train, heldout, parent = data.name, data.train, data.heldout, data.parent
    logger.info(
        "reward %s: %d training groups, %d held-out sets%s",
        name,
        len(train),
        len(heldout),
        f", continuing {parent.name} ({data.replayed} of the groups met before)" if parent else "",
    )
    scorer, tokenizer = build_scorer(config, parent)
    train_start = time.perf_counter()
    if config.trainer == "trl":
        from rlhf.train.reward_trl import train_with_trl

        train_with_trl(scorer, tokenizer, train, config)
    else:
        train_loop(scorer, tokenizer, train, config, reporter)
    train_seconds = time.perf_counter() - train_start
    reporter.start(1, "reward evaluation and saving")
    metrics = evaluate(scorer, tokenizer, heldout or train, config.max_length)
    metrics["train_seconds"] = round(train_seconds, 2)
    metrics["heldout_sets"], metrics["train_groups"] = len(heldout), len(train)
    metrics["replayed_sets"] = data.replayed
    metrics["seen_sets"] = len(data.seen)
    if data.reliability is not None:
        metrics["labeler_reliability"] = {str(k): round(v, 4) for k, v in data.reliability.ranked()}
    reporter.log({k: v for k, v in metrics.items() if isinstance(v, float | int)})
    folder = Path(config.home) / "models" / f"reward-{name}"
    meta = RewardMeta(
        base_model=config.model,
        reward_mean=metrics.get("reward_mean", 0.0) if config.normalize else 0.0,
        reward_std=metrics.get("reward_std", 1.0) if config.normalize else 1.0,
        full_finetune=config.full_finetune,
    )
    # Under several processes (`accelerate launch`, torchrun) one writes the files and the row; the others wait
    # for it (each computed the same name before training), so the model is stored once.
    state = PartialState()
    if state.is_main_process:  # the review list too: the other processes would score the same sets again
        metrics["review"] = hacking_review(scorer, tokenizer, data.complaints, config.max_length)
        save_reward_model(folder, scorer.model, scorer.head, meta)
        write_seen(folder, data.seen)
        if config.information:  # what uncertainty selection reads (rlhf/select/design.py)
            save_information(folder, head_precision(scorer, tokenizer, data.labeled, config.max_length))
    reporter.step()
    del scorer  # members train one at a time, each on a base of its own
    if config.ensemble > 1:  # before the row: the generator never reads a model whose members are half saved
        metrics["ensemble_accuracy"] = train_members(config, data, folder, reporter)
    facts = RewardFacts(
        accuracy=metrics["accuracy"] if heldout else None,
        heldout_pairs=metrics["pairs"] if heldout else 0,
        heldout_sets=len(heldout),
        heads=config.heads,
        ensemble=config.ensemble,
        information=config.information,
        continued_from=parent.name if parent else None,
    )
    reporter.start(1, "registering the reward model")
    if state.is_main_process:
        snapshot = write_snapshot(folder / "pairs_snapshot.jsonl", train, heldout, {"reward": asdict(config)})
        with Session(engine) as session:
            register_reward_model(
                session=session,
                name=name,
                base_model=config.model,
                adapter_path=str(folder),
                snapshot_path=str(snapshot),
                facts=facts,
                metrics=metrics,
                job_id=job_id,
            )
    state.wait_for_everyone()
    reporter.step()
    reporter.close()
    return RewardResult(name, folder, metrics, facts, len(train), len(heldout), time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    from rlhf.train.stage import run_stage

    run_stage(RewardConfig, run, argv, kind="reward")


if __name__ == "__main__":
    main()
