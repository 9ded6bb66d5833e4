"""A version taken away (`rankloop export-model`): merged, it loads with AutoModelForCausalLM alone and writes the
same greedy text as the base with its adapter; as an adapter, it loads with peft; both carry a model card with
the lineage. `rankloop versions` lists the lineage and the gate, `rankloop switch` makes one current by hand."""

from __future__ import annotations

import json

import torch
from peft import PeftModel
from sqlmodel import Session, select
from transformers import AutoModelForCausalLM, AutoTokenizer

from app import main
from labeler.store.db import make_engine
from labeler.store.tables import PolicyVersion
from models.generation import render_prompts
from models.loading import load_base
from tests.models.test_generation import _save_adapter
from tests.rlhf.ppo_helpers import ppo_store


def greedy(model, tokenizer, text: str) -> list[int]:
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0].tolist()


def test_a_version_exported_merged_writes_what_its_adapter_writes_and_carries_its_lineage(tmp_path, capsys):
    url, checkpoint = ppo_store(tmp_path)
    home = str(tmp_path)
    with Session(make_engine(url)) as s:
        v0 = s.exec(select(PolicyVersion)).one()
        v1 = PolicyVersion(version=1, base_model=checkpoint, adapter_path=_save_adapter(tmp_path / "v1", 1), parent_id=v0.id, gate_decision="fail", kl=2.5)  # fmt: skip
        s.add(v1)
        s.commit()
    assert main(["versions", "--home", home, "--db", url]) == 0
    listed = capsys.readouterr().out
    assert "v0 (current): parent -" in listed and "v1: parent v0, gate fail, KL 2.50" in listed
    assert main(["switch", "v1", "--home", home, "--db", url]) == 0  # a candidate the gate refused, by hand
    assert "v1 is now current (its gate said: fail)" in capsys.readouterr().out

    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert main(["export-model", "v1", "--out", str(merged), "--merge", "--home", home, "--db", url]) == 0
    assert main(["export-model", "1", "--out", str(adapter), "--home", home, "--db", url]) == 0
    base, tokenizer = load_base(checkpoint, home=tmp_path, device="cpu")
    with_adapter = PeftModel.from_pretrained(base, str(tmp_path / "v1"))
    alone = AutoModelForCausalLM.from_pretrained(str(merged))
    text = render_prompts(tokenizer, [[{"role": "user", "content": "Name a colour."}]])[0]
    own_tokenizer = AutoTokenizer.from_pretrained(str(merged))
    assert greedy(alone, own_tokenizer, text) == greedy(with_adapter, tokenizer, text)
    assert not (merged / "adapter_config.json").exists() and (adapter / "adapter_config.json").exists()
    card = (merged / "README.md").read_text()
    assert "Lineage: v0 -> v1" in card and "| v1 | - | 2.50 | - | fail | cli |" in card
    assert "library_name: peft" in (adapter / "README.md").read_text()
    assert main(["export-model", "v0", "--out", str(tmp_path / "x"), "--home", home, "--db", url]) == 1
    assert "v0 is the base itself, with no adapter: export it with --merge" in capsys.readouterr().err
    assert main(["switch", "three", "--home", home, "--db", url]) == 1


def saved_reward_model(folder, checkpoint: str, tmp_path) -> None:
    """A reward model as the reward stage saves one: a LoRA adapter on every projection, a three-member score head
    with a bias, normalisation."""
    from peft import LoraConfig, get_peft_model

    from rlhf.train.scoring import RewardMeta, ScoreHead, save_reward_model

    base, _ = load_base(checkpoint, home=tmp_path, device="cpu")
    torch.manual_seed(3)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora, adapter_name="reward")
    head = ScoreHead(base.config.hidden_size, heads=3)
    torch.nn.init.normal_(head.linear.weight, std=0.5)
    torch.nn.init.normal_(head.linear.bias, std=0.5)
    save_reward_model(folder, model, head, RewardMeta(base_model=checkpoint, reward_mean=0.3, reward_std=2.0))


def test_a_reward_model_exported_merged_scores_as_rankloop_does(tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from labeler.store.tables import RewardModel
    from rlhf.train.scoring import RewardScorer, encode, load_head, render_dialogue

    url, checkpoint = ppo_store(tmp_path)
    folder = tmp_path / "models" / "reward-r1"
    saved_reward_model(folder, checkpoint, tmp_path)
    with Session(make_engine(url)) as s:
        s.add(
            RewardModel(
                name="r1", base_model=checkpoint, adapter_path=str(folder), accuracy=0.71, heldout_pairs=40
            )
        )
        s.commit()
    merged, adapter = tmp_path / "r1-merged", tmp_path / "r1-adapter"
    home = str(tmp_path)
    assert main(["export-model", "r1", "--out", str(merged), "--merge", "--home", home, "--db", url]) == 0
    assert main(["export-model", "r1", "--out", str(adapter), "--home", home, "--db", url]) == 0
    offset = json.loads((merged / "reward_meta.json").read_text())["offset"]

    base, tokenizer = load_base(checkpoint, home=tmp_path, device="cpu")
    scorer = RewardScorer(
        PeftModel.from_pretrained(base, str(folder)), load_head(folder, base.config.hidden_size)
    )
    prompt = [{"role": "user", "content": "Name a colour."}]
    texts = [
        render_dialogue(tokenizer, prompt, answer)
        for answer in ("Blue.", "A colour is a thing that you see.")
    ]
    with torch.no_grad():
        ours = (scorer(**encode(tokenizer, texts, 64, "cpu")) - 0.3) / 2.0
        alone = AutoModelForSequenceClassification.from_pretrained(str(merged))
        own = AutoTokenizer.from_pretrained(str(merged))
        theirs = (
            alone(**own(texts, return_tensors="pt", padding=True, add_special_tokens=False)).logits[:, 0]
            + offset
        )
    assert torch.allclose(ours, theirs, atol=1e-4), (ours, theirs)
    assert not (merged / "adapter_config.json").exists() and (adapter / "score_head.safetensors").exists()
    assert "held-out pairwise accuracy: 0.710 on 40 pairs" in (merged / "README.md").read_text()
    assert main(["export-model", "r9", "--out", str(tmp_path / "x"), "--home", home, "--db", url]) == 1
    assert "no reward model 'r9' with saved weights (reward models: r1)" in capsys.readouterr().err
