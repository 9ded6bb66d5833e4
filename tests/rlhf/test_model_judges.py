"""Model judges (rlhf/serve/model_judges.py, models/pairwise.py) on the tiny model: a batch reads the same
probabilities as one question at a time, `base` is the bare base whatever version is active, and the generator's
worker lets a model judge rank the sets it wrote."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from labeler.labels.judges import add_judge, list_judges
from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.store import add_prompts
from labeler.store.tables import Ranking
from models.pairwise import PairwiseModel, letter_ids
from models.policy import PolicyPool
from models.tiny import tiny_model_and_tokenizer
from rlhf.serve.model_judges import ModelJudges
from tests.models.test_generation import _save_adapter
from tests.rlhf.test_pregen import _worker

QUESTIONS = [
    "Request: hi\n\nAnswer A: hello\n\nAnswer B: go away, sorry\n\nReply with A or B.",
    "Request: what is the capital of France?\n\nAnswer A: Paris.\n\nAnswer B: no\n\nReply with A or B.",
    "A or B?",
]


def test_a_batch_of_questions_reads_what_each_reads_alone(tiny):
    model, tokenizer = tiny
    judge = PairwiseModel(model, tokenizer, batch=8)
    together = judge.prefer_first(QUESTIONS)
    alone = [judge.prefer_first([q])[0] for q in QUESTIONS]
    assert together == pytest.approx(alone, abs=1e-5)  # left padding changes nothing a row computes
    assert all(0.0 < p < 1.0 for p in together) and len(set(together)) == 3
    assert letter_ids(tokenizer, "A") and letter_ids(tokenizer, "A") != letter_ids(tokenizer, "B")


def test_the_base_judge_asks_the_bare_base_whatever_version_is_active(tmp_path, tiny):
    model, tokenizer = tiny
    bare = PairwiseModel(*tiny_model_and_tokenizer(seed=0)).prefer_first(QUESTIONS)
    pool = PolicyPool(model, tokenizer)
    pool.activate(version=1, adapter_path=_save_adapter(tmp_path / "v1", 1))
    with_adapter = PairwiseModel(pool.model, tokenizer).prefer_first(QUESTIONS)
    assert with_adapter != pytest.approx(bare, abs=1e-4)  # the adapter moves the answer...
    assert ModelJudges(pool)("base", QUESTIONS) == pytest.approx(bare, abs=1e-5)  # ...the judge never sees it
    assert pool.active == "v1"  # and generation gets its version back


def test_the_generator_lets_a_model_judge_rank_the_sets_it_wrote(tmp_path, tiny):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with Session(engine) as s:
        add_prompts(session=s, conversations=[[{"role": "user", "content": f"say {i}"}] for i in range(4)])
        ensure_initial_policy(session=s, base_model="tiny")
        add_judge(session=s, name="self", kind="model", config={"model": "base"})
    worker = _worker(engine, tiny, buffer=4)
    assert worker.step() == 2 and worker.step() == 2  # the second step's judging reads the first's sets
    worker.step()
    with Session(engine) as s:
        rankings = s.exec(select(Ranking)).all()
        [row] = list_judges(session=s)
        assert row.ranked + row.abstained == 4 == len(rankings)
        assert all(r.seconds_spent is None for r in rankings)  # no human minutes
        for r in rankings:
            assert r.skipped or sorted(r.ranks.values())[0] == 1
