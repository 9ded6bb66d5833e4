"""Load a base causal LM and its tokenizer onto the best available device.

CUDA with bf16 where present, CPU float32 otherwise. Tokenizers get a pad token and left padding, which is
what batched generation needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.resolve import resolve_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevicePlan:
    """Where and in which dtype a model runs."""

    device: torch.device
    dtype: torch.dtype


def pick_device(prefer: str = "auto") -> DevicePlan:
    """`auto`: CUDA + bf16 when available, else CPU + float32. `cpu`/`cuda` force a device."""
    if prefer == "cpu" or (prefer == "auto" and not torch.cuda.is_available()):
        return DevicePlan(torch.device("cpu"), torch.float32)
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return DevicePlan(torch.device("cuda"), dtype)


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16): there bf16 autocast beats fp32 (a DPO step of
    the embedded default on 4 sets: 8.5 s against 13.8 s on the 2-core development machine; a reward step 6.7 s
    against 10.0 s); a CPU without it emulates bf16, several times slower than fp32."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe and probe())


def train_precision(mode: str, device: str) -> str:
    """The autocast mode a training stage runs in: `auto` is bf16 on a GPU and on a CPU with bf16 in hardware
    (`native_bf16_cpu`), fp32 (`no`) elsewhere; `no` and `bf16` are kept as asked."""
    if mode != "auto":
        return mode
    on_gpu = device != "cpu" and torch.cuda.is_available()
    return "bf16" if on_gpu or native_bf16_cpu() else "no"


def step_autocast(mode: str, device: str, where: torch.device) -> torch.autocast:
    """The autocast context for one training step's forward pass on `where`, bf16 where `train_precision` says
    so. Around the steps only: accelerate's own mixed precision wraps the model's forward for good, so what the
    stage measures after training (the KL budget, held-out accuracy) would read bf16 values (biased up at small
    KL)."""
    bf16 = train_precision(mode, device) == "bf16"
    return torch.autocast(where.type, dtype=torch.bfloat16, enabled=bf16)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Left padding for generation, and a pad token when the checkpoint has none."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_base(
    name: str, *, home: Path, device: str = "auto", load_in_4bit: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve `name` and load model + tokenizer, in eval mode, on the chosen device."""
    path = resolve_model(name, home=home)
    plan = pick_device(device)
    kwargs: dict = {"dtype": plan.dtype}
    if load_in_4bit:
        kwargs["quantization_config"] = _four_bit_config(plan)
        kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if not load_in_4bit:
        cast(Any, model).to(plan.device)
    model.eval()
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    logger.info("loaded %s from %s on %s (%s)", name, path, plan.device, plan.dtype)
    return model, tokenizer


def _four_bit_config(plan: DevicePlan):
    """A bitsandbytes 4-bit (NF4) config; needs CUDA and the `gpu` extra."""
    if plan.device.type != "cuda":
        raise RuntimeError("4-bit loading needs CUDA; this machine has none (drop --load-in-4bit)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("4-bit loading needs bitsandbytes: pip install 'rankloop[gpu]'") from exc
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=plan.dtype)
