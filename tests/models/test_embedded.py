"""The embedded default (SmolLM2-135M-Instruct). `make test` prepares the cache first, so this is fast."""

import time

import pytest

from models import embedded
from models.generation import SamplingParams, TransformersBackend
from models.loading import load_base


def test_default_model_loads_from_cache_and_answers(home):
    if not embedded.is_prepared(home):
        pytest.skip(f"embedded model not prepared in {home}: run `make prepare` (make test does it)")
    start = time.monotonic()
    model, tokenizer = load_base("default", home=home, device="cpu")
    load_s = time.monotonic() - start
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    backend = TransformersBackend(model, tokenizer)
    [[reply]] = backend.generate(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        1,
        SamplingParams(max_new_tokens=16, temperature=0),
    )
    assert reply.text.strip()
    assert "Paris" in reply.text
    assert load_s < 10, f"loading from the cache took {load_s:.1f}s"
    assert getattr(model.config, "quantization_config", None) is None  # de-quantized: trainers accept it
