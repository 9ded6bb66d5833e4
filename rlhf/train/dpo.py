"""DPO as an alternative optimiser for a round: `trl.DPOTrainer` on the store's consensus pairs, with LoRA on the
current policy (the reference is again the base with the adapter off). Saves and registers version K+1.

    rankloop round --optimizer dpo ...      (or directly: python -m rlhf.train.dpo --home runs)
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from accelerate import PartialState
from datasets import Dataset
from peft import LoraConfig, PeftModel, get_peft_model

from labeler.labels.dataset import set_ids_of_version, sets_of_version
from labeler.labels.pairs import PairSettings
from labeler.store.db import default_url, make_engine, read_session
from models.adapters import LORA_TARGETS
from models.loading import load_base, pick_device
from rlhf.train.configs import DPOConfig
from rlhf.train.dpo_sets import implicit_accuracy, train_on_sets
from rlhf.train.policy_stage import (
    budget_start,
    keep_within_budget,
    read_inputs,
    samples,
    save_adapter_version,
)
from rlhf.train.progress import ConsoleReporter, Reporter
from rlhf.train.reward_data import Group, load_groups, split_by_prompt


@dataclass
class DPOResult:
    name: str
    path: Path
    version: int
    metrics: dict
    seconds: float
    train_sets: int = 0  # the ranked sets whose pairs it trained on (the duration estimate's unit of work)
    kl_budget: dict | None = (
        None  # the KL budget's fit (policy_stage.keep_within_budget), None without a budget
    )


def pairs_dataset(groups: list[Group]) -> Dataset:
    """TRL's conversational prompt/chosen/rejected rows, one per consensus pair of each set."""
    rows = []
    for g in groups:
        for c, r, _, _ in g.pairs:
            rows.append(
                {
                    "prompt": g.prompt,
                    "chosen": [{"role": "assistant", "content": g.texts[c]}],
                    "rejected": [{"role": "assistant", "content": g.texts[r]}],
                }
            )
    if not rows:
        raise ValueError("no pairs to train on: rank some sets first")
    return Dataset.from_list(rows)


def per_process_batch(batch_size: int) -> int:
    """Each process's share of the global batch (trl's batch size is per device)."""
    processes = PartialState().num_processes
    if batch_size % processes:
        raise ValueError(
            f"batch_size={batch_size} does not split evenly over {processes} processes: use a multiple of {processes}"
        )
    return batch_size // processes


def train_with_trl(model, peft_config, tokenizer, groups: list[Group], config: DPOConfig, reporter: Reporter):
    """trl's DPOTrainer on the consensus pairs (`trainer=trl`); returns the trained model and the mean loss."""
    from trl import DPOConfig as TrlDPOConfig
    from trl import DPOTrainer

    data = pairs_dataset(groups)
    reporter.start(1, "dpo")
    plan = pick_device(config.device)  # `auto`: CUDA with bf16 where there is one, else the CPU in fp32
    on_cpu = plan.device.type == "cpu"
    with tempfile.TemporaryDirectory() as out:
        args = TrlDPOConfig(
            output_dir=out, num_train_epochs=config.epochs, learning_rate=config.learning_rate, beta=config.beta, label_smoothing=config.label_smoothing, per_device_train_batch_size=per_process_batch(config.batch_size),
            max_length=config.max_length, report_to=[], save_strategy="no", logging_steps=1, seed=config.seed,
            use_cpu=on_cpu, bf16=plan.dtype == torch.bfloat16,  # trl's default asks for bf16, which a CPU refuses
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config
        )
        result = trainer.train()
    for entry in trainer.state.log_history:
        if "loss" in entry:
            reporter.log(
                {
                    "step": entry.get("step", 0),
                    "loss": float(entry["loss"]),
                    "reward_accuracy": float(entry.get("rewards/accuracies", 0.0)),
                }
            )
    reporter.step()
    return cast(Any, trainer.model), {"loss": float(result.training_loss)}


def wide_pairs(group: Group, min_margin: float) -> Group:
    """The set with only the consensus pairs at least `min_margin` ranks apart (their weights with them)."""
    if min_margin <= 0:
        return group
    keep = [k for k, pair in enumerate(group.pairs) if pair[2] >= min_margin]
    weights = [group.weights[k] for k in keep] if group.weights else []
    return replace(group, pairs=[group.pairs[k] for k in keep], weights=weights)


def replayed(train: list[Group], own: set[int], share: float, seed: int) -> list[Group]:
    """The sets in `own` (the parent's) and `share` of the others, drawn with `seed`, in their order."""
    others = [g.set_id for g in train if g.set_id not in own]
    kept = set(random.Random(seed).sample(others, round(share * len(others))))
    return [g for g in train if g.set_id in own or g.set_id in kept]


def read_groups(engine, config: DPOConfig, version: int) -> tuple[list[Group], list[Group]]:
    """The ranked sets to train on (`data`: every one, or those the parent `version` wrote; with `replay` under 1,
    the parent's and that share of the others) and the held-out ones (`eval_fraction` of the prompts, all kept)."""
    replaying = config.data == "all" and config.replay < 1
    with read_session(engine) as session:
        groups = load_groups(
            session=session,
            settings=PairSettings(),
            include_imported=config.include_imported,
            sets=sets_of_version(session=session, version=version) if config.data == "parent" else None,
        )
        own = set(set_ids_of_version(session=session, version=version)) if replaying else set()
    if not any(g.pairs for g in groups):
        where = f"version v{version}'s sets" if config.data == "parent" else "the store"
        raise ValueError(
            f"data={config.data}: no ranked set in {where} has pairs yet; rank some sets first"
            + (" or train on all sets (data=all)" if config.data == "parent" else "")
        )
    train, heldout = split_by_prompt(groups, config.eval_fraction)
    if replaying:
        train = replayed(train, own, config.replay, config.seed + version)
        if not any(g.pairs for g in train):
            raise ValueError(
                f"replay={config.replay:g}: version v{version} wrote no ranked training set with pairs and no "
                "earlier set is replayed; raise replay or rank its sets first"
            )
    if not any(g.pairs for g in train):
        raise ValueError(
            f"eval_fraction={config.eval_fraction:g} holds out the prompts of every ranked set with pairs: rank "
            "sets on more prompts or lower eval_fraction"
        )
    train = [wide_pairs(g, config.min_margin) for g in train]
    if not any(g.pairs for g in train):
        raise ValueError(
            f"min_margin={config.min_margin:g}: no training pair is that many ranks apart; lower min_margin"
        )
    return train, [g for g in heldout if g.pairs]


def run(config: DPOConfig, *, reporter: Reporter | None = None, job_id: int | None = None) -> DPOResult:
    reporter = reporter or ConsoleReporter()
    start = time.perf_counter()
    engine = make_engine(config.db or default_url(Path(config.home)))
    inputs = read_inputs(
        engine, sample_count=config.sample_prompts, need_reward=False, parent_version=config.parent_version
    )
    groups, heldout = read_groups(engine, config, inputs.parent.version)
    base, tokenizer = load_base(inputs.parent.base_model, home=Path(config.home), device=config.device)
    peft_config = None
    model: Any
    torch.manual_seed(config.seed)  # a fresh adapter's initial weights
    if inputs.parent.adapter_path and config.start_from == "parent":
        model = PeftModel.from_pretrained(base, inputs.parent.adapter_path, is_trainable=True)
    else:
        model = base
        peft_config = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            target_modules=LORA_TARGETS,
        )
    anchor = budget_start(model, config, continued=peft_config is None)
    if config.trainer == "sets":
        model = model if peft_config is None else get_peft_model(model, peft_config)
        trained, final = train_on_sets(model, tokenizer, groups, config, reporter)
    else:
        trained, final = train_with_trl(model, peft_config, tokenizer, groups, config, reporter)
    budget = keep_within_budget(
        trained, tokenizer, [g.prompt for g in groups if g.pairs], config, reporter, anchor
    )
    if heldout:  # the version as saved: after any scaling to the budget
        final = {**final, **implicit_accuracy(trained, tokenizer, heldout, config)}
    after = samples(trained, tokenizer, inputs.prompts.samples, config.max_new_tokens)
    metrics = {
        "final": final,
        "samples_after": after,
        "config": asdict(config),
        "optimizer": "dpo",
        **({"kl_budget": budget} if budget else {}),
    }
    version, folder = save_adapter_version(
        engine,
        inputs,
        trained,
        home=Path(config.home),
        metrics=metrics,
        make_current=config.make_current,
        job_id=job_id,
    )
    reporter.close()
    sets = sum(1 for g in groups if g.pairs)
    return DPOResult(f"v{version}", folder, version, final, time.perf_counter() - start, sets, budget)


def main(argv: list[str] | None = None) -> None:
    from rlhf.train.stage import run_stage

    run_stage(DPOConfig, run, argv, kind="dpo")


if __name__ == "__main__":
    main()
