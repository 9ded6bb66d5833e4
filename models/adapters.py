"""Saving one named LoRA adapter as a standard PEFT folder (loadable by `PeftModel.from_pretrained(base, folder)`),
and a version taken away: its adapter folder, or the base with it merged in (`rankloop export-model`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Every linear projection of a Llama-style block: a new policy or reward adapter covers the same modules whichever
# stage makes it (PPO, DPO or the reward model).
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def save_adapter(model: PeftModel, name: str, folder: Path) -> Path:
    """Write adapter `name` into `folder` itself (PEFT puts non-default adapters in a subfolder)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), selected_adapters=[name])
    sub = folder / name
    if sub.is_dir():
        for f in sub.iterdir():
            f.replace(folder / f.name)
        sub.rmdir()
    return folder


def export_merged(
    base: PreTrainedModel, adapter: str | None, tokenizer: PreTrainedTokenizerBase, out: Path
) -> Path:
    """A plain transformers folder: the base with `adapter` (a PEFT folder; None: the base itself) merged into its
    weights, the tokenizer and the generation config; loads and generates with `AutoModelForCausalLM`, no peft."""
    model = base
    if adapter is not None:
        model = PeftModel.from_pretrained(base, adapter).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def export_adapter(adapter: str, tokenizer: PreTrainedTokenizerBase, out: Path) -> Path:
    """The PEFT adapter folder as it was saved, with the tokenizer beside it."""
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(adapter).iterdir():
        if f.is_file():
            shutil.copy2(f, out / f.name)
    tokenizer.save_pretrained(str(out))
    return out
