"""Tiny in-process models for tests: a small Llama-shaped causal LM and a byte-level BPE tokenizer trained on
the spot, with a ChatML chat template. Deterministic from a seed; nothing is downloaded.

    from models.tiny import tiny_model_and_tokenizer
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import cast

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from models.loading import prepare_tokenizer

SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Human: What is the capital of France? Assistant: The capital of France is Paris.",
    "Please write a short poem about the sea and the sky.",
    "I am sorry, I cannot help with that request because it could be harmful.",
    "Here is a list: first, second, third. Answer concisely and honestly.",
    "def add(a, b):\n    return a + b\n",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ! ? ; : ' \" ( ) [ ] { }",
    "user assistant system good bad helpful harmless honest yes no maybe",
]


@lru_cache(maxsize=4)
def _tokenizer_json(vocab_size: int) -> str:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text encodes) with pad distinct from EOS and a ChatML template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
        pad_token="<pad>",
        eos_token="<|im_end|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return cast(PreTrainedTokenizerFast, prepare_tokenizer(tokenizer))


def tiny_config(
    tokenizer: PreTrainedTokenizerFast, *, hidden_size: int = 64, layers: int = 2, init_range: float = 0.02
) -> LlamaConfig:
    """A few-layer Llama config sized to the tokenizer. A larger `init_range` gives a peakier, more steerable
    output distribution (PPO tests use it: at 0.02 a random tiny model is almost uniform over the vocabulary)."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
        initializer_range=init_range,
    )


def tiny_model_and_tokenizer(
    seed: int = 0, *, hidden_size: int = 64, layers: int = 2, init_range: float = 0.02
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Build a tiny causal LM (float32, CPU, eval mode) and its tokenizer; same seed, same weights."""
    tokenizer = tiny_tokenizer()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(
            tiny_config(tokenizer, hidden_size=hidden_size, layers=layers, init_range=init_range)
        )
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model, tokenizer


def save_tiny_checkpoint(folder: Path, seed: int = 0, init_range: float = 0.02) -> Path:
    """Write a tiny model + tokenizer as a normal checkpoint folder (for tests that load by path)."""
    model, tokenizer = tiny_model_and_tokenizer(seed, init_range=init_range)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
