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
from peft import PeftModel

from models.generation import Completion, Messages, render_prompts
from models.logprobs import Row, answer_distributions, answer_logprobs, exact_kl, per_row
from models.policy import PolicyPool


def _rows(tokenizer, prompts: Sequence[Messages], answers: Sequence[Sequence[Completion]]) -> list[Row]:
    """(prompt token ids, answer token ids) per answer, in order."""
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


def token_kl(model: PeftModel, rows: Sequence[Row], *, pad_id: int, temperature: float) -> torch.Tensor:
    """Per row, the sum over its answer tokens of the exact KL between the next-token distributions of the active
    adapter and the base after the same prefix: an estimate of the sequence KL with far less noise than the
    sampled tokens' log-ratio (the same expectation over prefixes, every token's alternatives counted)."""
    policy, _, row = answer_distributions(model, rows, pad_id=pad_id, temperature=temperature)
    with model.disable_adapter():
        base, _, _ = answer_distributions(model, rows, pad_id=pad_id, temperature=temperature)
    return per_row(exact_kl(policy, base), row, len(rows))


def log_ratio(model: PeftModel, rows: Sequence[Row], *, pad_id: int, temperature: float) -> torch.Tensor:
    """Per row, log p(answer) with the active adapter minus with the adapters off (the base)."""
    policy = answer_logprobs(model, rows, pad_id=pad_id, temperature=temperature)
    with model.disable_adapter():
        return policy - answer_logprobs(model, rows, pad_id=pad_id, temperature=temperature)


def adapter_kl(
    model: PeftModel,
    tokenizer,
    *,
    prompts: Sequence[Messages],
    answers: Sequence[Sequence[Completion]],
    temperature: float,
    batch: int = 16,
    exact_tokens: bool = False,
) -> list[float]:
    """Per answer (prompt by prompt, in order), `log_ratio` of `model`'s active adapter to the base at
    `temperature`: their mean estimates KL(adapter || base) over these prompts. With `exact_tokens`, each
    answer's `token_kl` instead (answers sampled at `temperature` without top-p)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 to compare distributions, got {temperature}")
    estimate = token_kl if exact_tokens else log_ratio
    rows = _rows(tokenizer, prompts, answers)
    pad = tokenizer.pad_token_id or 0
    out: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            out.extend(estimate(model, chunk, pad_id=pad, temperature=temperature).cpu().tolist())
    return out


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
    if adapter_path is None:
        return [0.0] * sum(len(a) for a in answers)
    with pool.as_version(version=version, adapter_path=adapter_path):
        assert isinstance(pool.model, PeftModel), "a version with an adapter runs as a PeftModel"
        return adapter_kl(
            pool.model, pool.tokenizer, prompts=prompts, answers=answers, temperature=temperature, batch=batch
        )
