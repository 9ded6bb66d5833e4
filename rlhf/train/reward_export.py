"""A reward model taken away (`rankloop export-model r3 --out DIR [--merge]`): as it is (the PEFT adapter, its score
head, its normalisation and any ensemble members, with the tokenizer), or merged into a plain transformers
sequence-classification folder that `AutoModelForSequenceClassification` loads without peft or rankloop.

Merged, the score head's members are averaged (the mean of linear members is one linear layer) and the
normalisation is folded in, so `logits[:, 0] + offset` is the reward rankloop's scorer gives (`offset`, the head's
bias less the mean, over the std, is in `reward_meta.json` and the card: a classification head has no bias, and a
constant changes no preference). The sequence is scored at its last token that is not the pad token, so the
config's pad token is one the scored text never ends with.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.train.scoring import HEAD_FILE, META_FILE, load_head, load_meta


def export_reward_adapter(folder: Path, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """The reward model's folder as it was saved (adapter, head, meta, members), with the tokenizer."""
    shutil.copytree(folder, out, dirs_exist_ok=True)
    tokenizer.save_pretrained(str(out))
    return out


def pad_for_scoring(tokenizer: PreTrainedTokenizerBase) -> int:
    """A pad id that is not the end-of-turn token the scored text ends with (where the pad is the EOS, as in many
    chat models, sequence classification would read the token before it)."""
    eos = tokenizer.eos_token_id
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id, 0):
        if candidate is not None and candidate != eos:
            return int(candidate)
    raise ValueError("the tokenizer has no token to pad with other than its end token")


def export_reward_merged(
    base: PreTrainedModel, folder: Path, tokenizer: PreTrainedTokenizerBase, out: Path
) -> float:
    """Write the merged classifier into `out`; returns the offset to add to its logit."""
    if not (folder / "adapter_config.json").exists():
        raise ValueError(f"{folder} holds a fully fine-tuned reward model: export it without --merge")
    meta = load_meta(folder)
    merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    config = merged.config
    config.num_labels = 1
    config.pad_token_id = pad_for_scoring(tokenizer)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(
        config.pad_token_id
    )  # batches pad with what it skips
    config.architectures = None
    classifier = AutoModelForSequenceClassification.from_config(config)
    backbone = getattr(merged, merged.base_model_prefix)
    getattr(classifier, classifier.base_model_prefix).load_state_dict(backbone.state_dict())
    head = load_head(folder, config.hidden_size)
    std = max(meta.reward_std, 1e-6)
    with torch.no_grad():
        classifier.score.weight.copy_(head.linear.weight.mean(dim=0, keepdim=True) / std)
    offset = float((head.linear.bias.detach().mean() - meta.reward_mean) / std)
    out.mkdir(parents=True, exist_ok=True)
    classifier.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    kept = {
        "offset": offset,
        "members": head.heads,
        "pad_token_id": config.pad_token_id,
        "base_model": meta.base_model,
    }
    (out / META_FILE).write_text(json.dumps(kept, indent=2))
    return offset


def reward_card(name: str, base_model: str, facts: dict, merged: bool, offset: float | None) -> str:
    """The README.md of an exported reward model."""
    accuracy = facts.get("accuracy")
    how = (
        "`AutoModelForSequenceClassification.from_pretrained(folder)`; the reward is `logits[:, 0] + "
        f"{offset:.6f}` (the offset changes no preference)"
        if merged
        else f"`PeftModel.from_pretrained(base, folder)` on `{base_model}` with the score head in `{HEAD_FILE}` "
        f"(a linear layer on the last hidden state at the last token) and the normalisation in `{META_FILE}`"
    )
    return "\n".join(
        [
            "---",
            f"base_model: {base_model}",
            "library_name: " + ("transformers" if merged else "peft"),
            "tags: [rlhf, rankloop, reward-model]",
            "---",
            f"# rankloop reward model {name}",
            "",
            f"A Bradley-Terry reward model trained by rankloop on its labelers' rankings. Load it with {how}.",
            "Score a conversation rendered with the base's chat template, ending with the answer's end-of-turn token.",
            "",
            f"- held-out pairwise accuracy: {'-' if accuracy is None else f'{accuracy:.3f}'} "
            f"on {facts.get('heldout_pairs', 0)} pairs ({facts.get('heldout_sets', 0)} sets)",
            f"- continued from {facts.get('continued_from') or '-'}",
            f"- score-head members: {facts.get('heads', 1)}; ensemble models: {facts.get('ensemble', 1)}",
            "",
        ]
    )
