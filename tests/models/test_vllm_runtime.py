"""The vLLM backend at run time, on the tiny checkpoint with a LoRA adapter: where vLLM and a CUDA GPU exist it
generates sets for the active version, for another version through `generate_as` (human-evaluation mixing), and
keeps the active one untouched; elsewhere it skips and says why (vLLM needs CUDA and the `gpu` extra)."""

from __future__ import annotations

import pytest

from models.vllm_backend import vllm_problem

pytestmark = pytest.mark.skipif(vllm_problem() is not None, reason=f"vLLM cannot run here: {vllm_problem()}")

PROMPTS = [[{"role": "user", "content": "say something short"}], [{"role": "user", "content": "count to 3"}]]


def test_vllm_serves_the_active_version_and_another_one_through_generate_as(tmp_path):
    from peft import LoraConfig, get_peft_model

    from models.adapters import save_adapter
    from models.generation import SamplingParams
    from models.tiny import save_tiny_checkpoint, tiny_model_and_tokenizer
    from models.vllm_backend import VLLMBackend

    checkpoint = save_tiny_checkpoint(tmp_path / "tiny")
    model, _ = tiny_model_and_tokenizer()
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    adapter = save_adapter(lora, "default", tmp_path / "policy-v1")

    backend = VLLMBackend(str(checkpoint), max_lora_rank=8, gpu_memory_utilization=0.2)
    sampling = SamplingParams(max_new_tokens=6, temperature=0.8, seed=0)
    backend.activate(version=1, adapter_path=str(adapter))
    sets = backend.generate(PROMPTS, 3, sampling)
    assert [len(s) for s in sets] == [3, 3] and all(c.token_count > 0 for s in sets for c in s)
    old = backend.generate_as(version=0, adapter_path=None, prompts=PROMPTS, n=2, sampling=sampling)
    assert [len(s) for s in old] == [2, 2]
    assert (backend.version, backend.adapter_path) == (1, str(adapter))  # the active version is untouched
