"""How far a policy version has moved from v0: the KL divergence of version K from the base (its adapter off),
estimated on answers version K sampled, per answer, as the sum over its tokens of log pK - log p0 (both at the
answers' sampling temperature; top-p truncation is ignored). Zero for v0 itself. It is one measure for every
optimiser (PPO reports KL on its own rollouts; DPO reports none), e.g. in bench/loop.py:

    answers = pool.generate_as(version=3, adapter_path=path, prompts=prompts, n=4, sampling=sampling)
    kl = answers_kl(pool, version=3, adapter_path=path, prompts=prompts, answers=answers, temperature=0.7)

Answers are re-tokenized from their text (plus the EOS token where they ended), so the estimate can differ a little
from one on the sampled token ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.generation import Completion, Messages, render_prompts
from models.logprobs import Row, answer_logprobs
from models.policy import PolicyPool


def _rows(
    pool: PolicyPool, prompts: Sequence[Messages], answers: Sequence[Sequence[Completion]]
) -> list[Row]:
    """(prompt token ids, answer token ids) per answer, in order."""
    tokenizer = pool.tokenizer
    eos = tokenizer.eos_token_id
    rows = []
    for text, completions in zip(render_prompts(tokenizer, prompts), answers, strict=True):
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for c in completions:
            answer_ids = tokenizer(c.text, add_special_tokens=False)["input_ids"]
            if c.finish_reason == "eos" and eos is not None:
                answer_ids = [*answer_ids, eos]
            rows.append((prompt_ids, answer_ids))
    return rows


def answers_kl(
    pool: PolicyPool,
    *,
    version: int,
    adapter_path: str | None,
    prompts: Sequence[Messages],
    answers: Sequence[Sequence[Completion]],
    temperature: float,
    batch: int = 16,
) -> list[float]:
    """Per answer (prompt by prompt, in order), log pK(answer) - log p0(answer) at `temperature`; their mean
    estimates KL(vK || v0) over these prompts."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to compare distributions, got {temperature}")
    rows = _rows(pool, prompts, answers)
    if adapter_path is None:
        return [0.0] * len(rows)
    out: list[float] = []
    pad = pool.tokenizer.pad_token_id or 0
    with pool.as_version(version=version, adapter_path=adapter_path), torch.inference_mode():
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            policy = answer_logprobs(pool.model, chunk, pad_id=pad, temperature=temperature)
            with pool.base_context():
                base = answer_logprobs(pool.model, chunk, pad_id=pad, temperature=temperature)
            out.extend((policy - base).cpu().tolist())
    return out
