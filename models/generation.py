"""Generation: N completions per chat prompt behind one protocol.

The transformers backend batches every prompt x N into `generate` calls (chunked to a token budget), with the
chat template applied, left padding, stop at EOS, temperature / top-p sampling and a seed.

    backend = TransformersBackend(model, tokenizer)
    sets = backend.generate([[{"role": "user", "content": "Hi"}]], n=4, sampling=SamplingParams(seed=0))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol, cast

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

Message = dict[str, str]
Messages = list[Message]
FinishReason = Literal["eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How completions are sampled. temperature 0 means greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 0.8
    top_p: float = 0.95
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    """One generated answer: text without special tokens, generated-token count, and why it stopped."""

    text: str
    token_count: int
    finish_reason: FinishReason


class GenerationBackend(Protocol):
    """`generate(prompts, n, sampling)` returns, per prompt, a list of n completions."""

    def generate(
        self, prompts: Sequence[Messages], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]: ...


class PolicyBackend(GenerationBackend, Protocol):
    """A backend that serves policy versions (adapters on one base): what the pre-generation worker and the
    admin's side-by-side samples need. `models.policy.PolicyPool` and `models.vllm_backend.VLLMBackend`."""

    def activate(self, *, version: int, adapter_path: str | None) -> None:
        """Make `version` the one `generate` uses."""
        ...

    def generate_as(
        self,
        *,
        version: int,
        adapter_path: str | None,
        prompts: Sequence[Messages],
        n: int,
        sampling: SamplingParams,
    ) -> list[list[Completion]]:
        """Generate from `version` without changing the active one (human-evaluation mixing, comparisons)."""
        ...


def render_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Messages]) -> list[str]:
    """Apply the chat template with the assistant turn opened."""
    return [
        str(tokenizer.apply_chat_template(list(p), tokenize=False, add_generation_prompt=True))
        for p in prompts
    ]


def split_generated(
    tokens: torch.Tensor, *, eos_ids: set[int], pad_id: int | None
) -> tuple[list[int], FinishReason]:
    """Cut a generated row at its first EOS; return (tokens kept, including the EOS, and the finish reason)."""
    row = tokens.tolist()
    for i, tok in enumerate(row):
        if tok in eos_ids:
            return row[: i + 1], "eos"
    if pad_id is not None and pad_id not in eos_ids:
        while row and row[-1] == pad_id:
            row.pop()
    return row, "length"


def duplicate_slots(sets: Sequence[Sequence[Completion]]) -> list[tuple[int, int]]:
    """(set index, completion index) of every completion whose text already appeared earlier in its set."""
    slots = []
    for i, completions in enumerate(sets):
        seen: set[str] = set()
        for j, c in enumerate(completions):
            if c.text in seen:
                slots.append((i, j))
            seen.add(c.text)
    return slots


def resample_duplicates(sets: list[list[Completion]], prompts: Sequence[Messages], sample_one) -> int:
    """Replace duplicates in place with one fresh sample each (one batched call); returns how many."""
    slots = duplicate_slots(sets)
    if slots:
        fresh = sample_one([prompts[i] for i, _ in slots])
        for (i, j), [completion] in zip(slots, fresh, strict=True):
            sets[i][j] = completion
    return len(slots)


class TransformersBackend:
    """Batched `model.generate` over all prompts x N, chunked so one call holds at most `token_budget` tokens."""

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        token_budget: int = 32768,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.token_budget = token_budget

    def _eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = {ids} if isinstance(ids, int) else set(ids or [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _generate_chunk(self, texts: list[str], sampling: SamplingParams) -> list[Completion]:
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        greedy = sampling.temperature <= 0
        kwargs = {} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p}
        with torch.inference_mode():
            out = cast(Any, self.model).generate(  # transformers' stubs type it loosely
                **enc,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=not greedy,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=sorted(self._eos_ids()),
                **kwargs,
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :].cpu()
        eos_ids, pad_id = self._eos_ids(), self.tokenizer.pad_token_id
        completions = []
        for row in new_tokens:
            kept, reason = split_generated(row, eos_ids=eos_ids, pad_id=pad_id)
            text = str(self.tokenizer.decode(kept, skip_special_tokens=True)).strip()
            completions.append(Completion(text=text, token_count=len(kept), finish_reason=reason))
        return completions

    def generate(
        self, prompts: Sequence[Messages], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """N completions per prompt; within a set, exact duplicates are re-sampled once (sampling only)."""
        sets = self._generate_all(prompts, n, sampling)
        if sampling.temperature > 0 and n > 1:
            reseed = replace(sampling, seed=None if sampling.seed is None else sampling.seed + 1)
            resample_duplicates(sets, prompts, lambda ps: self._generate_all(ps, 1, reseed))
        return sets

    def _generate_all(
        self, prompts: Sequence[Messages], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        if not prompts:
            return []
        texts = [t for t in render_prompts(self.tokenizer, prompts) for _ in range(n)]
        longest = max(len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"])
        chunk = max(1, self.token_budget // (longest + sampling.max_new_tokens))
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        flat: list[Completion] = []
        for start in range(0, len(texts), chunk):
            flat.extend(self._generate_chunk(texts[start : start + chunk], sampling))
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]
