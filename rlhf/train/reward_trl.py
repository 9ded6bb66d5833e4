"""The per-pair baseline through `trl.RewardTrainer`: pairs in TRL's conversational format, a LoRA
sequence-classification model on the same base, then its adapter and score weights copied into rankloop's
scorer (same layer names, adapter `reward`), so the result is saved and used like any other reward model."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, cast

import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForSequenceClassification
from trl import RewardConfig as TrlRewardConfig
from trl import RewardTrainer

from models.loading import train_precision
from models.resolve import resolve_model
from rlhf.train.reward_data import Group
from rlhf.train.scoring import RewardScorer


def pairs_dataset(groups: list[Group]) -> Dataset:
    rows = []
    for g in groups:
        for c, r, margin, _ in g.pairs:
            rows.append(
                {
                    "prompt": g.prompt,
                    "chosen": [{"role": "assistant", "content": g.texts[c]}],
                    "rejected": [{"role": "assistant", "content": g.texts[r]}],
                    "margin": margin,
                }
            )
    return Dataset.from_list(rows)


def copy_into_scorer(trained: torch.nn.Module, scorer: RewardScorer) -> int:
    """Copy LoRA and score weights from the trained classifier into the scorer; returns tensors copied."""
    target = dict(scorer.model.named_parameters())
    copied = 0
    for name, value in trained.named_parameters():
        if "lora_" in name:
            key = name.replace(".default.", ".reward.")
            target[key].data.copy_(value.data)
            copied += 1
        elif name.endswith("score.weight") or name.endswith("score.modules_to_save.default.weight"):
            scorer.head.linear.weight.data.copy_(value.data)
            scorer.head.linear.bias.data.zero_()
            copied += 1
    return copied


def train_with_trl(scorer: RewardScorer, tokenizer, groups: list[Group], config) -> None:
    path = resolve_model(config.model, home=Path(config.home))
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    data = pairs_dataset(groups)
    if not config.use_margin:
        data = data.remove_columns("margin")
    lora = LoraConfig(
        task_type="SEQ_CLS",
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.05,
        target_modules=list(cast(Any, scorer.model).peft_config["reward"].target_modules),
    )
    with tempfile.TemporaryDirectory() as out:
        args = TrlRewardConfig(
            output_dir=out,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_sets,
            gradient_accumulation_steps=config.grad_accum,
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.lr_schedule,
            warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
            max_length=config.max_length,
            center_rewards_coefficient=config.center_rewards or None,
            report_to=[],
            save_strategy="no",
            logging_steps=config.log_every,
            use_cpu=config.device == "cpu" or not torch.cuda.is_available(),
            seed=config.seed,
            bf16=train_precision(config.mixed_precision, config.device) == "bf16",
        )
        trainer = RewardTrainer(
            model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=lora
        )
        trainer.train()
    if copy_into_scorer(cast(torch.nn.Module, trainer.model), scorer) == 0:
        raise RuntimeError("no weights copied from the trl model: layer names did not match")
