"""Training reads turns (tiny model): a reward model and DPO train on two-turn sets whose whole history is the
prompt, the oldest turns dropped first when a conversation is too long, never the answer; the export holds both
turns with their history, conversation and turn, and loads in `datasets` as TRL conversational data."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from labeler.io.export import export_preferences
from labeler.labels.conversations import continue_conversations, set_conversations
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, submit_ranking
from labeler.store.tables import PolicyVersion, Prompt, id_of
from labeler.store.users import add_user
from models.tiny import tiny_model_and_tokenizer
from rlhf.train.scoring import fit_history, render_dialogue
from tests.rlhf.ppo_helpers import ppo_store

ANSWERS = ["a short answer here", "no", "maybe later then"]


def rank_all(engine, user_id: int, follow_up: str = "") -> int:
    """The labeler ranks every waiting set, the first answer first, writing `follow_up` as the next message."""
    done = 0
    with Session(engine) as s:
        while (leased := lease_next_set(session=s, user_id=user_id, seed=done)) is not None:
            ranks = {id_of(c): ANSWERS.index(c.text) + 1 for c in leased.completions}
            submit_ranking(session=s, ranking=RankingIn(id_of(leased.set), user_id, f"r-{id_of(leased.set)}", ranks=ranks, follow_up=follow_up))  # fmt: skip
            done += 1
    return done


def add_sets(engine, turn: int) -> None:
    with Session(engine) as s:
        v0 = s.exec(select(PolicyVersion)).one().id
        for prompt in s.exec(select(Prompt).where(Prompt.turn == turn, Prompt.split == "train")).all()[:6]:
            add_completion_set(session=s, prompt_id=id_of(prompt), completions=[CompletionIn(a) for a in ANSWERS], policy_version_id=v0)  # fmt: skip


def test_reward_and_dpo_train_on_two_turn_sets_and_the_export_holds_both_turns(tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    from rlhf.train import dpo, reward
    from rlhf.train.configs import DPOConfig, RewardConfig

    url, checkpoint = ppo_store(tmp_path)
    engine = make_engine(url)
    with Session(engine) as s:
        set_conversations(session=s, default="labeler", depth=2)
        ann = id_of(add_user(session=s, name="ann", password="ann-password"))
    add_sets(engine, turn=1)
    assert rank_all(engine, ann, follow_up="And why is that?") == 6
    with Session(engine) as s:
        assert continue_conversations(session=s) == 6
    add_sets(engine, turn=2)
    assert rank_all(engine, ann) == 6
    common = {"home": str(tmp_path), "db": url, "device": "cpu", "max_length": 48}
    trained = reward.run(RewardConfig(model=checkpoint, epochs=1, eval_fraction=0.0, **common))
    assert trained.train_sets == 12  # both turns
    tuned = dpo.run(DPOConfig(epochs=1, batch_size=2, sample_prompts=1, max_new_tokens=4, **common))
    assert tuned.version == 1 and tuned.train_sets == 12

    out = tmp_path / "export"
    with Session(engine) as s:
        export_preferences(session=s, out=out, fmt="jsonl")
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    later = [r for r in rows if r["turn"] == 2]
    assert len(later) == 6 * 3 and len(rows) == 12 * 3
    assert [m["role"] for m in later[0]["prompt"]] == ["user", "assistant", "user"]
    assert (
        later[0]["prompt"][1]["content"] == ANSWERS[0]
        and later[0]["prompt"][2]["content"] == "And why is that?"
    )
    with Session(engine) as s:
        firsts = {id_of(p) for p in s.exec(select(Prompt).where(Prompt.turn == 1)).all()}
    assert {r["conversation_id"] for r in later} <= firsts
    loaded = load_dataset("json", data_files=str(out / "preferences.jsonl"), split="train")
    assert all(is_conversational(row) for row in loaded)  # TRL's own test of its conversational format
    assert max(len(row["prompt"]) for row in loaded) == 3


def test_a_long_conversation_loses_its_oldest_turns_first_never_its_answer():
    _, tokenizer = tiny_model_and_tokenizer(seed=0)
    long = "word " * 60
    talk = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": long},
        {"role": "assistant", "content": long},
        {"role": "user", "content": "second question"},
        {"role": "assistant", "content": "second answer"},
        {"role": "user", "content": "last question"},
    ]
    answer = "the answer, kept whole"
    wanted = [talk[0], *talk[3:]]  # the system message stays; the long first exchange goes
    room = len(tokenizer(render_dialogue(tokenizer, wanted, answer), add_special_tokens=False)["input_ids"])
    assert fit_history(tokenizer, talk, [answer], max_length=room) == wanted
    assert fit_history(tokenizer, talk, [answer], max_length=4096) == talk  # it fits: nothing dropped
    assert fit_history(tokenizer, talk[-1:], [answer], max_length=4) == talk[-1:]  # the last message stays
    shortest = fit_history(tokenizer, talk, [long], max_length=16)
    assert shortest == [talk[0], talk[-1]]
