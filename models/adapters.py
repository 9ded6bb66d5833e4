"""Saving one named LoRA adapter as a standard PEFT folder (loadable by `PeftModel.from_pretrained(base, folder)`)."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel

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
