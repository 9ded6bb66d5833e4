from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model

from models.generation import (
    Completion,
    SamplingParams,
    TransformersBackend,
    duplicate_slots,
    resample_duplicates,
)
from models.policy import PolicyPool
from models.tiny import tiny_model_and_tokenizer

PROMPTS = [
    [{"role": "user", "content": "hi"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Please write a short poem about the sea and the sky, with rhymes."},
    ],
    [{"role": "user", "content": "What is the capital of France?"}],
]
GREEDY = SamplingParams(max_new_tokens=12, temperature=0)


def test_n_completions_per_prompt_and_seeded_sampling_is_reproducible(tiny):
    backend = TransformersBackend(*tiny)
    sampling = SamplingParams(max_new_tokens=10, temperature=1.0, seed=123)
    first = backend.generate(PROMPTS, 3, sampling)
    assert [len(s) for s in first] == [3, 3, 3]
    for completions in first:
        for c in completions:
            assert 1 <= c.token_count <= 10 and c.finish_reason in ("eos", "length")
            assert c.finish_reason == "eos" or c.token_count == 10
    assert backend.generate(PROMPTS, 3, sampling) == first
    assert backend.generate(PROMPTS, 3, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7)) != first


def test_left_padding_does_not_change_greedy_output(tiny):
    backend = TransformersBackend(*tiny)
    batched = backend.generate(PROMPTS, 1, GREEDY)
    alone = [backend.generate([p], 1, GREEDY)[0] for p in PROMPTS]
    assert batched == alone


def test_chunking_to_a_token_budget_gives_the_same_result(tiny):
    model, tokenizer = tiny
    whole = TransformersBackend(model, tokenizer).generate(PROMPTS, 2, GREEDY)
    chunked = TransformersBackend(model, tokenizer, token_budget=40).generate(PROMPTS, 2, GREEDY)
    assert chunked == whole


def test_duplicates_within_a_set_are_resampled_once():
    c = lambda t: Completion(t, 1, "eos")  # noqa: E731
    sets = [[c("a"), c("a"), c("b")], [c("x"), c("y")]]
    assert duplicate_slots(sets) == [(0, 1)]
    calls = []

    def fresh(prompts):
        calls.append(prompts)
        return [[c("new")] for _ in prompts]

    assert resample_duplicates(sets, ["p0", "p1"], fresh) == 1
    assert sets[0] == [c("a"), c("new"), c("b")] and calls == [["p0"]]


def _save_adapter(folder: Path, seed: int) -> str:
    base, _ = tiny_model_and_tokenizer(seed=0)
    torch.manual_seed(seed)
    peft_model = get_peft_model(
        base,
        LoraConfig(
            r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
        ),
    )
    peft_model.save_pretrained(str(folder))
    return str(folder)


def test_adapter_swap_returns_to_the_same_output_on_one_base(tmp_path, tiny):
    a, b = _save_adapter(tmp_path / "a", 1), _save_adapter(tmp_path / "b", 2)
    model, tokenizer = tiny
    embed = model.get_input_embeddings().weight
    pool = PolicyPool(model, tokenizer)
    base_out = pool.generate(PROMPTS, 1, GREEDY)
    pool.activate(version=1, adapter_path=a)
    out_a = pool.generate(PROMPTS, 1, GREEDY)
    pool.activate(version=2, adapter_path=b)
    out_b = pool.generate(PROMPTS, 1, GREEDY)
    pool.activate(version=1, adapter_path=a)
    assert pool.generate(PROMPTS, 1, GREEDY) == out_a
    assert out_a != out_b and out_a != base_out
    pool.activate(version=0, adapter_path=None)
    assert pool.generate(PROMPTS, 1, GREEDY) == base_out
    assert pool.loaded_adapters == ["v1", "v2"]
    assert pool.model.get_input_embeddings().weight is embed  # one base, never reloaded or copied


def test_generate_as_uses_that_version_and_restores_the_active_one(tmp_path, tiny):
    a = _save_adapter(tmp_path / "a", 1)
    model, tokenizer = tiny
    pool = PolicyPool(model, tokenizer)
    base_out = pool.generate(PROMPTS, 1, GREEDY)
    as_a = pool.generate_as(version=1, adapter_path=a, prompts=PROMPTS, n=1, sampling=GREEDY)
    assert as_a != base_out and pool.active is None and pool.version == 0
    assert pool.generate(PROMPTS, 1, GREEDY) == base_out
    pool.activate(version=1, adapter_path=a)
    assert pool.generate(PROMPTS, 1, GREEDY) == as_a
    as_base = pool.generate_as(version=0, adapter_path=None, prompts=PROMPTS, n=1, sampling=GREEDY)
    assert as_base == base_out and pool.active == "v1" and pool.version == 1


def test_backend_resamples_identical_completions(tiny):
    model, tokenizer = tiny
    backend = TransformersBackend(model, tokenizer)
    # a near-zero temperature makes sampling effectively greedy, so all N come out identical at first
    calls = []
    original = backend._generate_all

    def spy(prompts, n, sampling):
        calls.append((len(prompts), n))
        return original(prompts, n, sampling)

    backend._generate_all = spy
    backend.generate(PROMPTS[:1], 3, SamplingParams(max_new_tokens=4, temperature=1e-4, seed=0))
    assert calls == [(1, 3), (2, 1)]  # one batched call for the two duplicates


def test_vllm_backend_selection_is_clear_where_it_cannot_run(tiny):
    import pytest

    from models.vllm_backend import BackendUnavailable, select_backend, vllm_problem

    pool = PolicyPool(*tiny)
    problem = vllm_problem()
    if problem is None:
        pytest.skip("vLLM can run here; the GPU check covers it")
    assert select_backend("auto", model_path="unused", pool=pool) is pool
    assert select_backend("transformers", model_path="unused", pool=pool) is pool
    with pytest.raises(BackendUnavailable, match="use --backend transformers"):
        select_backend("vllm", model_path="unused", pool=pool)


def test_both_backends_serve_policy_versions_with_the_protocols_calls():
    """The pre-generation worker mixes versions with `generate_as`: both backends must have it (vLLM lacked it)."""
    import inspect

    from models.generation import PolicyBackend
    from models.policy import PolicyPool
    from models.vllm_backend import VLLMBackend

    for name in ("generate", "activate", "generate_as"):
        wanted = list(inspect.signature(getattr(PolicyBackend, name)).parameters)
        for backend in (PolicyPool, VLLMBackend):
            assert list(inspect.signature(getattr(backend, name)).parameters) == wanted, (backend, name)


def _logprob(model, tokenizer, messages, completion: Completion, temperature: float) -> float:
    """log p(answer | prompt) by one plain forward pass on one unpadded sequence."""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a = tokenizer(completion.text, add_special_tokens=False)["input_ids"]
    a = [*a, tokenizer.eos_token_id] if completion.finish_reason == "eos" else a
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(p) - 1 : -1] / temperature
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(a).unsqueeze(1)).sum().item()


def test_answers_kl_is_log_pk_minus_log_p0_per_answer_and_zero_for_v0(tmp_path, tiny):
    from peft import PeftModel

    from models.divergence import answers_kl

    a = _save_adapter(tmp_path / "a", 1)
    model, tokenizer = tiny
    pool = PolicyPool(model, tokenizer)
    sampling = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=1.0, seed=0)
    answers = pool.generate_as(version=1, adapter_path=a, prompts=PROMPTS, n=8, sampling=sampling)
    first = answers[0][0]
    # an ended answer scores its EOS token too
    answers[0].append(Completion(first.text, first.token_count + 1, "eos"))
    kl = answers_kl(
        pool, version=1, adapter_path=a, prompts=PROMPTS, answers=answers, temperature=0.7, batch=5
    )
    assert pool.active is None and pool.version == 0  # the active version is given back
    plain, _ = tiny_model_and_tokenizer(seed=0)
    tuned = PeftModel.from_pretrained(tiny_model_and_tokenizer(seed=0)[0], a)
    expected = [
        _logprob(tuned, tokenizer, m, c, 0.7) - _logprob(plain, tokenizer, m, c, 0.7)
        for m, s in zip(PROMPTS, answers, strict=True)
        for c in s
    ]
    assert kl == pytest.approx(expected, abs=1e-3)
    assert sum(kl) / len(kl) > 0.1  # answers vK sampled are likelier under vK: a positive KL estimate
    same = answers_kl(pool, version=0, adapter_path=None, prompts=PROMPTS, answers=answers, temperature=0.7)
    assert same == [0.0] * len(kl)
