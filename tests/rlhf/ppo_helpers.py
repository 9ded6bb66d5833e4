"""A store with prompts and a tiny v0 for PPO tests, a synthetic reward (the share of response tokens drawn from a
target set: the lowest quarter of the vocabulary; about 0.25 for the untrained tiny model), and a saved adapter's
weights."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from sqlmodel import Session

from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.store import add_prompts
from models.tiny import save_tiny_checkpoint, tiny_tokenizer
from rlhf.train.configs import PPOConfig


def ppo_store(tmp: Path) -> tuple[str, str]:
    url = f"sqlite:///{tmp / 'rankloop.db'}"
    checkpoint = str(save_tiny_checkpoint(tmp / "tiny", init_range=0.2))
    with Session(make_engine(url)) as session:
        add_prompts(
            session=session,
            conversations=[[{"role": "user", "content": f"question {i}"}] for i in range(16)],
            eval_fraction=0.25,
        )
        ensure_initial_policy(session=session, base_model=checkpoint)
    return url, checkpoint


def saved_adapter(folder: Path | str) -> dict[str, torch.Tensor]:
    """The tensors of the PEFT adapter saved in `folder`."""
    return load_file(Path(folder) / "adapter_model.safetensors")


def assert_on_the_line(parent: dict, trained: dict, kept: dict, scale: float) -> None:
    """A budget fitted toward the parent: the round moved the adapter, and the kept version lies on the line from
    the parent's weights to the round's unbudgeted ones, at `scale` (tensors by name, as `saved_adapter` reads)."""
    assert max((trained[n] - parent[n]).abs().max().item() for n in parent) > 1e-3
    for name in parent:
        expected = parent[name] + scale * (trained[name] - parent[name])
        assert torch.allclose(kept[name], expected, atol=1e-5), name


TARGET_BELOW = len(tiny_tokenizer()) // 4


def target_share(shared, ro) -> torch.Tensor:
    hits = (ro.responses < TARGET_BELOW).float() * ro.response_mask
    return hits.sum(1) / ro.response_mask.sum(1).clamp(min=1)


def quick_config(tmp: Path, url: str, **overrides) -> PPOConfig:
    base = {
        "home": str(tmp), "db": url, "steps": 25, "batch_prompts": 32, "minibatch": 16, "ppo_epochs": 2, "learning_rate": 2e-2,
        "max_new_tokens": 8, "kl_coef": 0.01, "adaptive_kl": False, "no_eos_penalty": None, "device": "cpu", "stop_kl": 0.5,
        "reward_clip": 10.0, "lora_r": 8, "lora_alpha": 16,
    }  # fmt: skip
    return PPOConfig(**{**base, **overrides})
