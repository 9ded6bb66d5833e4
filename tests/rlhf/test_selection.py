"""Choosing what to label next: the doubt score, the choice with a random share, the admin's settings, and the
pre-generation worker keeping the candidates the latest reward model doubts most, within a per-version budget."""

import random

import pytest
import torch
from sqlmodel import Session, col, select

from app import main
from labeler.records.policies import count_sets, current_policy
from labeler.records.reward_models import find_reward_model, selection_measure
from labeler.store.db import make_engine
from labeler.store.settings import Selection, selection, set_selection
from labeler.store.store import add_prompts
from labeler.store.tables import Completion, CompletionSet, Prompt
from models.generation import SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from rlhf.select.design import Design
from rlhf.select.selection import PoolScorer, choose, disagreement, doubt, uncertainty
from rlhf.serve import pregen
from rlhf.serve.pregen import PregenConfig, PregenWorker
from rlhf.train.configs import RewardConfig
from rlhf.train.information import PRIOR, load_information, pair_columns
from rlhf.train.reward import Batch, in_bootstrap, members_loss, run
from rlhf.train.scoring import load_head
from tests.rlhf.synthetic import synthetic_store


def test_doubt_is_one_for_equal_scores_and_falls_as_the_model_orders_the_answers():
    assert doubt([0.3, 0.3, 0.3]) == pytest.approx(1.0)
    assert doubt([0.0, 10.0, 20.0]) < 0.01
    assert doubt([0.0, 0.5, 1.0]) > doubt([0.0, 2.0, 4.0])
    assert doubt([0.0, 2.0], scale=4.0) > doubt([0.0, 2.0])  # in units of the model's std
    assert doubt([1.0]) == 0.0


def test_disagreement_is_zero_where_the_members_agree_even_on_a_coin_flip():
    alike = [[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]]  # two answers, three members: all unsure the same way
    assert disagreement(alike) == pytest.approx(0.0, abs=1e-9)
    assert disagreement([[5.0, 5.0], [0.0, 0.0]]) == pytest.approx(0.0, abs=1e-9)  # all sure the same way
    split = [[9.0, -9.0], [-9.0, 9.0]]  # each member sure, and they disagree: a label settles it
    assert disagreement(split) == pytest.approx(1.0, abs=1e-3)
    assert 0 < disagreement([[1.0, -1.0], [-1.0, 1.0]]) < disagreement(split)
    assert disagreement([[1.0, -1.0], [-1.0, 1.0]], scale=4.0) < disagreement([[1.0, -1.0], [-1.0, 1.0]])
    assert disagreement([[1.0, 2.0]]) == 0.0  # one answer: no pair


def test_uncertainty_reads_disagreement_from_several_members_and_doubt_from_one():
    one = [[[0.0], [0.1]], [[0.0], [3.0]]]
    assert uncertainty(one) == ("doubt", [doubt([0.0, 0.1]), doubt([0.0, 3.0])])
    several = [[[0.0, 2.0], [2.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]]
    measure, values = uncertainty(several)
    assert measure == "disagreement" and values[0] > values[1] == pytest.approx(0.0, abs=1e-9)


def test_each_member_past_the_first_trains_on_a_fixed_bootstrap_share_of_the_sets():
    assert all(in_bootstrap(i, 0, seed=0) for i in range(200))
    shares = [sum(in_bootstrap(i, k, seed=0) for i in range(2000)) / 2000 for k in (1, 2, 3)]
    assert all(0.59 < x < 0.67 for x in shares)
    assert [in_bootstrap(i, 1, 0) for i in range(50)] == [in_bootstrap(i, 1, 0) for i in range(50)]
    assert [in_bootstrap(i, 1, 0) for i in range(50)] != [in_bootstrap(i, 2, 0) for i in range(50)]


def test_a_member_learns_nothing_from_the_sets_outside_its_share():
    config = RewardConfig(seed=0)
    inside = next(i for i in range(100) if in_bootstrap(i, 1, 0))
    outside = next(i for i in range(100) if not in_bootstrap(i, 1, 0))
    batch = Batch(
        enc={},
        pairs=torch.tensor([[0, 1], [2, 3]]),
        margins=torch.ones(2),
        ties=torch.zeros(2, dtype=torch.bool),
        negatives=torch.zeros(0, dtype=torch.long),
        pair_sets=torch.tensor([inside, outside]),
        negative_sets=torch.zeros(0, dtype=torch.long),
    )
    members = torch.zeros(4, 2, requires_grad=True)
    members_loss(members, batch, config).backward()
    assert members.grad is not None
    assert (members.grad[:, 0] != 0).all()  # member 0 learns from both sets
    assert (members.grad[:2, 1] != 0).all() and (members.grad[2:, 1] == 0).all()


def test_choose_keeps_the_most_doubtful_and_a_random_share():
    doubts = [0.1, 0.9, 0.5, 0.8, 0.2, 0.7]
    top = choose(doubts, keep=3, random_share=0.0, rng=random.Random(0))
    assert [c.index for c in top] == [1, 3, 5] and {c.by for c in top} == {"uncertainty"}
    assert [c.score for c in top] == [0.9, 0.8, 0.7]
    lucky = choose(doubts, keep=3, random_share=1.0, rng=random.Random(0))
    assert len(lucky) == 3 and {c.by for c in lucky} == {"random"}
    draws = [choose(doubts, keep=2, random_share=0.25, rng=random.Random(s)) for s in range(400)]
    share = sum(c.by == "random" for d in draws for c in d) / 800
    assert 0.2 < share < 0.3  # the share holds on average even for small batches
    assert len(choose(doubts, keep=10, random_share=0.0, rng=random.Random(0))) == 6
    with pytest.raises(ValueError, match="random share must be between 0 and 1"):
        choose(doubts, keep=1, random_share=1.5, rng=random.Random(0))


def test_selection_settings_are_checked_before_they_are_stored(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    with Session(engine) as s:
        assert selection(session=s) == Selection()
        set_selection(session=s, mode="uncertainty", budget=12)
        assert selection(session=s) == Selection(mode="uncertainty", budget=12)
        for bad, message in [
            ({"mode": "smart"}, "selection mode must be random or uncertainty"),
            ({"random_share": 2.0}, "random share must be between 0 and 1"),
            ({"oversample": 0}, "oversample must be between 1 and 8"),
            ({"budget": -1}, "budget must be 0"),
        ]:
            with pytest.raises(ValueError, match=message):
                set_selection(session=s, **bad)
        assert selection(session=s) == Selection(mode="uncertainty", budget=12)  # unchanged


@pytest.fixture(params=[(1, False)])
def ranked_store(tmp_path, request):
    """A store with ranked synthetic sets, a tiny reward model r1 trained on them (`request.param`: its
    score-head members, and whether it saves its precision) and 12 fresh prompts."""
    url, checkpoint = synthetic_store(tmp_path, sets=24)
    settings = {"epochs": 1, "learning_rate": 3e-3, "eval_fraction": 0.0, "max_length": 64, "device": "cpu"}
    heads, information = request.param
    run(RewardConfig(model=checkpoint, home=str(tmp_path), db=url, heads=heads, information=information, **settings))  # fmt: skip
    engine = make_engine(url)
    with Session(engine) as s:
        add_prompts(session=s, conversations=[[{"role": "user", "content": f"new {i}"}] for i in range(12)])
    base, tokenizer = load_base(checkpoint, home=tmp_path, device="cpu")
    return engine, PolicyPool(base, tokenizer)


def _worker(engine, pool) -> PregenWorker:
    sampling = SamplingParams(max_new_tokens=6, temperature=1.0, seed=0)
    config = PregenConfig(buffer=30, n=3, batch_prompts=2, sampling=sampling)
    return PregenWorker(engine=engine, pool=pool, config=config)


def _new_sets(engine) -> list[CompletionSet]:
    with Session(engine) as s:
        rows = s.exec(select(CompletionSet).order_by(col(CompletionSet.id))).all()
        return [r for r in rows if r.selection is not None]


def test_worker_keeps_the_candidates_the_reward_model_doubts_most(ranked_store, monkeypatch):
    engine, pool = ranked_store
    with Session(engine) as s:
        set_selection(session=s, mode="uncertainty", random_share=0.0, oversample=3)
    seen: list[list[float]] = []

    def spy(doubts, **kw):
        seen.append(list(doubts))
        return choose(doubts, **kw)

    monkeypatch.setattr(pregen, "choose", spy)
    worker = _worker(engine, pool)
    assert worker.step() == 2  # 6 candidates written by the model, the 2 most doubtful kept
    kept = _new_sets(engine)
    assert len(kept) == 2 and len(seen) == 1 and len(seen[0]) == 6
    assert sorted(r.selection["score"] for r in kept if r.selection) == pytest.approx(
        sorted(seen[0])[-2:], abs=1e-4
    )
    for row in kept:
        assert row.selection is not None
        assert row.selection["by"] == "uncertainty" and row.selection["reward_model"] == "r1"
        assert (
            row.selection["measure"] == "doubt"
            and row.selection["candidates"] == 6
            and 0 <= row.selection["score"] <= 1
        )
    # the stored score is the reward model's doubt about the kept answers, and generation carries on with the
    # policy (the bare base: the reward adapter is off again)
    assert pool.active is None
    with Session(engine) as s:
        reward = find_reward_model(session=s)
        assert reward is not None and reward.adapter_path
        for row in kept:
            texts = [c.text for c in s.exec(select(Completion).where(Completion.set_id == row.id)).all()]
            prompt = s.get(Prompt, row.prompt_id)
            assert prompt is not None and row.selection is not None
            [rewards] = PoolScorer(pool).score(reward.adapter_path, [(prompt.messages, texts)])
            assert doubt(rewards) == pytest.approx(row.selection["score"], abs=1e-3)


@pytest.mark.parametrize("ranked_store", [(3, False)], indirect=True)
def test_a_model_with_several_members_is_read_by_their_disagreement(ranked_store, tmp_path):
    engine, pool = ranked_store
    with Session(engine) as s:
        set_selection(session=s, mode="uncertainty", random_share=0.0, oversample=3)
        reward = find_reward_model(session=s)
        assert reward is not None and reward.adapter_path
    head = load_head(tmp_path / "models" / "reward-r1", pool.model.config.hidden_size)
    assert head.heads == 3
    with Session(engine) as s:  # the row records it, and the admin is told what selection reads
        assert "where its 3 score heads disagree" in selection_measure(session=s)
    assert _worker(engine, pool).step() == 2
    kept = _new_sets(engine)
    with Session(engine) as s:
        for row in kept:
            assert row.selection is not None and row.selection["measure"] == "disagreement"
            texts = [c.text for c in s.exec(select(Completion).where(Completion.set_id == row.id)).all()]
            prompt = s.get(Prompt, row.prompt_id)
            assert prompt is not None
            [members] = PoolScorer(pool).score_members(reward.adapter_path, [(prompt.messages, texts)])
            assert all(len(m) == 3 for m in members)
            assert disagreement(members) == pytest.approx(row.selection["score"], abs=1e-3)
            [mean] = PoolScorer(pool).score(reward.adapter_path, [(prompt.messages, texts)])
            assert mean == pytest.approx([sum(m) / 3 for m in members], abs=1e-5)


@pytest.mark.parametrize("ranked_store", [(1, True)], indirect=True)
def test_a_model_that_saved_its_precision_is_read_by_the_information_a_label_adds(ranked_store, tmp_path):
    engine, pool = ranked_store
    folder = tmp_path / "models" / "reward-r1"
    saved = load_information(folder)
    hidden = pool.model.config.hidden_size
    assert saved is not None and saved.shape == (hidden, hidden) and torch.allclose(saved, saved.T)
    assert torch.linalg.eigvalsh(saved).min().item() >= PRIOR - 1e-4  # the prior plus the labeled pairs
    with Session(engine) as s:
        set_selection(session=s, mode="uncertainty", random_share=0.0, oversample=3)
        assert "selection keeps the sets a label would teach it most" in selection_measure(session=s)
    worker = _worker(engine, pool)
    assert worker.step() == 2
    kept = _new_sets(engine)
    assert len(kept) == 2 and all(r.selection and r.selection["measure"] == "information" for r in kept)
    # the first set kept is the one with the most information under the saved precision; the second was
    # scored after the first counted as known
    design = Design(saved)
    with Session(engine) as s:
        gains = []
        for row in kept:
            texts = [c.text for c in s.exec(select(Completion).where(Completion.set_id == row.id)).all()]
            prompt = s.get(Prompt, row.prompt_id)
            assert prompt is not None
            [(h, r)] = PoolScorer(pool).features(str(folder), [(prompt.messages, texts)])
            gains.append(design.gain(pair_columns(h, r)))
    recorded = [r.selection["score"] for r in kept if r.selection]
    assert max(recorded) == pytest.approx(max(gains), abs=1e-3) and min(recorded) <= min(gains) + 1e-3
    assert worker.step() == 2  # the next step goes on from the same design: both earlier sets count as known
    assert worker._designs[str(folder)] is not None


def test_random_mode_records_its_choice_and_a_budget_caps_the_version(ranked_store):
    engine, pool = ranked_store
    with Session(engine) as s:
        set_selection(session=s, mode="random", budget=24 + 3)  # the 24 ranked sets count too
        version = current_policy(session=s)
        assert version is not None
        version_id = version.id
    worker = _worker(engine, pool)
    while worker.step():
        pass
    kept = _new_sets(engine)
    assert len(kept) == 3 and all(r.selection == {"by": "random"} for r in kept)
    with Session(engine) as s:
        assert count_sets(session=s, policy_version_id=version_id) == 27
        set_selection(session=s, budget=0)
    assert worker.step() == 2  # no budget: it fills again


def test_selection_command_line(tmp_path, capsys):
    home = str(tmp_path / "home")
    argv = ["selection", "--mode", "uncertainty", "--oversample", "3", "--budget", "64", "--home", home]
    assert main(argv) == 0
    assert "3 candidates per kept set" in capsys.readouterr().out
    assert main(["selection", "--home", home]) == 0  # shows the settings
    assert "at most 64 sets per policy version" in capsys.readouterr().out
    assert main(["selection", "--random-share", "1.5", "--home", home]) != 0
    assert "random share must be between 0 and 1, got 1.5" in capsys.readouterr().err
    with Session(make_engine(f"sqlite:///{tmp_path / 'home' / 'rankloop.db'}")) as s:
        assert selection(session=s) == Selection(mode="uncertainty", oversample=3, budget=64)


def test_a_reward_model_that_fails_to_score_leaves_a_random_choice_recorded_as_random(
    ranked_store, monkeypatch
):
    engine, pool = ranked_store
    with Session(engine) as s:
        set_selection(session=s, mode="uncertainty", random_share=0.0, oversample=3)

    def broken(self, folder, sets):
        raise OSError(f"{folder}: adapter file unreadable")

    monkeypatch.setattr(PoolScorer, "score_members", broken)
    assert _worker(engine, pool).step() == 2  # labeling goes on
    kept = _new_sets(engine)
    assert len(kept) == 2 and all(r.selection and r.selection["by"] == "random" for r in kept)


def test_rankloop_reward_heads_trains_and_saves_a_head_with_that_many_members(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=12)
    argv = ["reward", "--heads", "2", "--epochs", "1", "--max_length", "64", "--eval_fraction", "0",
            "--device", "cpu", "--home", str(tmp_path), "--db", url, "--model", checkpoint]  # fmt: skip
    main(argv)
    assert load_head(tmp_path / "models" / "reward-r1", 64).heads == 2
    with pytest.raises(SystemExit, match="heads = 0 is out of range: it must be at least 1 and at most 16"):
        main([argv[0], "--heads", "0", *argv[3:]])  # checked before anything trains
