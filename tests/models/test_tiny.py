import torch
from peft import LoraConfig, get_peft_model

from models.tiny import tiny_model_and_tokenizer


def _batch(tokenizer):
    enc = tokenizer(["The quick brown fox", "Please write a poem"], return_tensors="pt", padding=True)
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc, labels


def test_same_seed_same_weights_different_seed_differs():
    a, _ = tiny_model_and_tokenizer(seed=1)
    b, _ = tiny_model_and_tokenizer(seed=1)
    c, _ = tiny_model_and_tokenizer(seed=2)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tokenizer_roundtrip_and_chat_template(tiny):
    _, tokenizer = tiny
    text = "Zebra 🦓 says: déjà vu!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"


def test_one_optimizer_step_changes_parameters(tiny):
    model, tokenizer = tiny
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    enc, labels = _batch(tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(**enc, labels=labels).loss.backward()
    opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert len(changed) == len(before)


def test_lora_step_changes_only_adapter_weights(tiny):
    model, tokenizer = tiny
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.train()
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    enc, labels = _batch(tokenizer)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    # Two steps: lora_B starts at zero, so lora_A only moves once B is non-zero.
    for _ in range(2):
        opt.zero_grad()
        peft_model(**enc, labels=labels).loss.backward()
        opt.step()
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(before[n], p)}
    assert changed, "no parameter changed"
    assert all("lora_" in n for n in changed), sorted(changed)
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
