"""Reward-model pieces shared by the reward stage and PPO: a scalar score head on the base model's last hidden
state, read at the last real token (found from the attention mask, so left or right padding both work and a pad
token equal to EOS hides nothing), and saving/loading the head next to a PEFT adapter.

A reward model on disk is a standard PEFT folder (`PeftModel.from_pretrained` loads it) plus `score_head.safetensors`
and `reward_meta.json` (base model, normalisation); a model trained with `--ensemble K` keeps its other members,
each such a folder, in `members/1` .. `members/K-1`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from models.adapters import save_adapter

HEAD_FILE = "score_head.safetensors"
META_FILE = "reward_meta.json"
MEMBERS_DIR = "members"


def backbone(model: nn.Module) -> nn.Module:
    """The transformer without its LM head (LoRA layers, injected in place, stay active)."""
    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    return cast(nn.Module, inner.base_model)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position per row (works for left and right padding)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask).argmax(dim=1)


class ScoreHead(nn.Module):
    """hidden state -> scalar reward: the mean of `heads` linear members (one by default). With several, each
    member is trained on its own bootstrap share of the sets (rlhf/train/reward.py) and their disagreement measures
    what the model has not learned yet (rlhf/select/selection.py: `disagreement`)."""

    def __init__(self, hidden_size: int, init_std: float = 0.02, heads: int = 1):
        super().__init__()
        self.linear = nn.Linear(hidden_size, heads)
        # transformers' sequence-classification heads start at N(0, initializer_range): small initial scores, so
        # the first steps learn the preference instead of undoing a random ranking of the base's features.
        nn.init.normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    @property
    def heads(self) -> int:
        return self.linear.out_features

    def members(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., hidden] -> [..., heads]: every member's reward."""
        return self.linear(hidden)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.members(hidden).mean(dim=-1)


class RewardScorer(nn.Module):
    """Base model (with the reward adapter active) + score head: `scorer(ids, mask) -> rewards[B]`."""

    def __init__(self, model: nn.Module, head: ScoreHead):
        super().__init__()
        self.model = model
        self.head = head

    def last_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[B, hidden]: the base's last hidden state at each row's last real token, in the head's dtype."""
        hidden = backbone(self.model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hidden[rows, last_token_index(attention_mask)].to(self.head.linear.weight.dtype)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, members: bool = False
    ) -> torch.Tensor:
        """rewards [B], or with `members` every score-head member's reward [B, heads]."""
        hidden = self.last_hidden(input_ids, attention_mask)
        return self.head.members(hidden) if members else self.head(hidden)


def render_dialogue(tokenizer: PreTrainedTokenizerBase, prompt: Sequence[dict], response: str) -> str:
    """Prompt + response in the chat template, ending at the end-of-turn token (the token that is scored)."""
    messages = [*prompt, {"role": "assistant", "content": response}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False)).rstrip("\n")


def fit_history(
    tokenizer: PreTrainedTokenizerBase, prompt: Sequence[dict], answers: Sequence[str], max_length: int
) -> list[dict]:
    """A conversation cut to fit: its oldest turns dropped, a user message with the assistant's reply at a time
    (a system message stays), until the longest answer fits after it in `max_length` tokens. The last user message
    always stays and no answer is ever cut here; what still does not fit is cut from the left, token by token,
    by `encode` and `fit_row` as before."""
    messages = list(prompt)
    longest = max(answers, key=len, default="")
    head = 1 if messages and messages[0].get("role") == "system" else 0

    def size(m: list[dict]) -> int:
        return len(tokenizer(render_dialogue(tokenizer, m, longest), add_special_tokens=False)["input_ids"])

    while sum(m.get("role") == "user" for m in messages) > 1 and size(messages) > max_length:
        rest = messages[head + 1 :]
        next_user = next((i for i, m in enumerate(rest) if m.get("role") == "user"), len(rest))
        messages = messages[:head] + rest[next_user:]
    return messages


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, device
) -> dict[str, torch.Tensor]:
    """Tokenize, truncating from the left so the final turns (where answers differ) are kept."""
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        enc = tokenizer(
            list(texts),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
            add_special_tokens=False,
        )
    finally:
        tokenizer.truncation_side = side
    return {k: v.to(device) for k, v in enc.items()}


@dataclass
class RewardMeta:
    base_model: str
    adapter_name: str = "reward"
    reward_mean: float = 0.0
    reward_std: float = 1.0
    full_finetune: bool = False


def save_reward_model(folder: Path, model: nn.Module, head: ScoreHead, meta: RewardMeta) -> Path:
    """Adapter (or, for a full fine-tune, the whole model) + head + meta in one folder."""
    folder.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, PeftModel):
        cast(Any, model).save_pretrained(folder)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, folder / HEAD_FILE
        )
        (folder / META_FILE).write_text(json.dumps(asdict(meta), indent=2))
        return folder
    save_adapter(model, meta.adapter_name, folder)
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, folder / HEAD_FILE)
    (folder / META_FILE).write_text(json.dumps(asdict(meta), indent=2))
    return folder


def load_head(folder: Path, hidden_size: int) -> ScoreHead:
    """The saved score head, with as many members as it was trained with (one for models before members)."""
    state = load_file(folder / HEAD_FILE)
    head = ScoreHead(hidden_size, heads=state["linear.weight"].shape[0])
    head.load_state_dict(state)
    return head


def load_meta(folder: Path) -> RewardMeta:
    return RewardMeta(**json.loads((folder / META_FILE).read_text()))


def member_folder(folder: Path, member: int) -> Path:
    """Where ensemble member `member` (1 and up; 0 is the model itself) of the model in `folder` is saved."""
    return folder / MEMBERS_DIR / str(member)


def ensemble_folders(folder: Path) -> list[Path]:
    """The model's folder, then each saved ensemble member's, in member order."""
    members = folder / MEMBERS_DIR
    found = (
        sorted((int(p.name), p) for p in members.iterdir() if p.name.isdigit()) if members.is_dir() else []
    )
    return [folder] + [p for _, p in found]
