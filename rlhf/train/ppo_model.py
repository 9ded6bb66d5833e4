"""One base model, four roles (see DESIGN.md): policy = base + trainable LoRA adapter `policy` + value head;
reference = the same base with adapters off (or a frozen copy of the previous policy's small adapter);
reward = the same base + frozen adapter `reward` + score head. No second copy of the base weights exists.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn

from models.adapters import LORA_TARGETS, save_adapter
from rlhf.train.ppo_math import entropy_from_logits
from rlhf.train.scoring import RewardMeta, ScoreHead, backbone, last_token_index, load_head, load_meta

VALUE_HEAD_FILE = "value_head.safetensors"
POLICY, REWARD, REFERENCE = "policy", "reward", "reference"


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


class PolicyWithValue(nn.Module):
    """The trainable part (policy adapter + value head), one module so `accelerate` can wrap it."""

    def __init__(self, model: PeftModel, value_head: ValueHead):
        super().__init__()
        self.model = model
        self.value_head = value_head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits predicting each response token and the value before it: [B, R, V] and [B, R]."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        logits = out.logits[:, prompt_len - 1 : -1]
        values = self.value_head(out.hidden_states[-1][:, prompt_len - 1 : -1])
        return logits, values


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


@dataclass
class SharedModel:
    policy: PolicyWithValue
    reward_head: ScoreHead | None
    reward_meta: RewardMeta | None
    reference_adapter: str | None  # None: adapters off (the loop's initial model)

    @property
    def model(self) -> PeftModel:
        return self.policy.model


@contextlib.contextmanager
def active_adapter(model: PeftModel, name: str):
    """Switch adapters for a block, always returning to the policy (and its trainable flags)."""
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(POLICY)
        for n, p in model.named_parameters():
            p.requires_grad = f".{POLICY}." in n and "lora_" in n


def build_shared(
    base: nn.Module,
    *,
    policy_path: str | None,
    reward_path: str | None,
    reference: str = "initial",
    lora_r: int = 16,
    lora_alpha: int = 32,
    target_modules: list[str] | None = None,
) -> SharedModel:
    """Wrap `base` once with the policy adapter (from the parent version or new), the frozen reward adapter and,
    for `reference="previous"`, a frozen copy of the parent's adapter."""
    hidden: int = cast(Any, base).config.hidden_size
    device = cast(Any, base).device
    if policy_path:
        model = PeftModel.from_pretrained(base, policy_path, adapter_name=POLICY, is_trainable=True)
    else:
        targets = target_modules or LORA_TARGETS
        lora = LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=targets)
        model = get_peft_model(base, lora, adapter_name=POLICY)
    value_head = ValueHead(hidden).to(device)
    if policy_path and (Path(policy_path) / VALUE_HEAD_FILE).exists():
        value_head.load_state_dict(load_file(Path(policy_path) / VALUE_HEAD_FILE))
    reward_head = reward_meta = None
    if reward_path:
        model.load_adapter(reward_path, adapter_name=REWARD, is_trainable=False)
        reward_head = load_head(Path(reward_path), hidden).to(device).eval()
        reward_head.requires_grad_(False)
        reward_meta = load_meta(Path(reward_path))
    reference_adapter = None
    if reference == "previous" and policy_path:
        model.load_adapter(policy_path, adapter_name=REFERENCE, is_trainable=False)
        reference_adapter = REFERENCE
    with active_adapter(model, POLICY):
        pass  # sets the trainable flags: only the policy's LoRA weights
    return SharedModel(PolicyWithValue(model, value_head), reward_head, reward_meta, reference_adapter)


@torch.no_grad()
def reference_logprobs(
    shared: SharedModel, ids: torch.Tensor, mask: torch.Tensor, prompt_len: int
) -> torch.Tensor:
    model = shared.model
    context = (
        model.disable_adapter()
        if shared.reference_adapter is None
        else active_adapter(model, shared.reference_adapter)
    )
    with context:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, prompt_len - 1 : -1]
    return gather_logprobs(logits, ids[:, prompt_len:])


@torch.no_grad()
def reward_scores(shared: SharedModel, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reward-model scores at the last real token, normalised with the reward model's held-out mean/std."""
    if shared.reward_head is None:
        raise RuntimeError("no reward model loaded")
    with active_adapter(shared.model, REWARD):
        hidden = backbone(shared.model)(input_ids=ids, attention_mask=mask).last_hidden_state
    rows = torch.arange(ids.shape[0], device=ids.device)
    scores = shared.reward_head(
        hidden[rows, last_token_index(mask)].to(shared.reward_head.linear.weight.dtype)
    )
    meta = shared.reward_meta
    return (scores - meta.reward_mean) / meta.reward_std if meta else scores


def policy_forward(
    shared: SharedModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    prompt_len: int,
    module: nn.Module | None = None,
):
    """(logprobs, values, entropy) of the response tokens under the policy; `module` is the accelerate-wrapped one."""
    logits, values = (module or shared.policy)(ids, mask, prompt_len)
    return gather_logprobs(logits, ids[:, prompt_len:]), values, entropy_from_logits(logits)


def save_policy(shared: SharedModel, folder: Path) -> Path:
    save_adapter(shared.model, POLICY, folder)
    state = {k: v.detach().cpu().contiguous() for k, v in shared.policy.value_head.state_dict().items()}
    save_file(state, folder / VALUE_HEAD_FILE)
    return folder
