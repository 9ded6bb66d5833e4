"""Reward-model ensembles for choosing what to label: `--ensemble K` trains K models with their own adapters,
heads and seeds, saves the others under members/, continues each member from the parent's, and the generator
reads their disagreement while scores (what PPO reads) stay the model's own."""

import pytest
import torch
from sqlmodel import Session, col, select

from app import main
from labeler.store.db import make_engine
from labeler.store.settings import set_selection
from labeler.store.store import add_prompts
from labeler.store.tables import CompletionSet, RewardModel
from models.generation import SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from rlhf.select.selection import PoolScorer, disagreement
from rlhf.serve.pregen import PregenConfig, PregenWorker
from rlhf.train.configs import RewardConfig
from rlhf.train.reward import run
from rlhf.train.scoring import ensemble_folders, member_folder
from tests.rlhf.ppo_helpers import saved_adapter
from tests.rlhf.synthetic import add_ranked_sets, synthetic_store

SETTINGS = {"epochs": 1, "learning_rate": 3e-3, "eval_fraction": 0.25, "max_length": 64, "device": "cpu"}


def _config(tmp_path, url, checkpoint, **overrides) -> RewardConfig:
    return RewardConfig(model=checkpoint, home=str(tmp_path), db=url, **{**SETTINGS, **overrides})


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k] - b[k]).abs().sum()) for k in a)


@pytest.fixture
def ensemble_store(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=16)
    # without its precision (--no_information), so that selection reads the members' disagreement
    result = run(_config(tmp_path, url, checkpoint, ensemble=3, information=False))
    return tmp_path, url, checkpoint, result


def test_an_ensemble_saves_its_other_members_with_their_own_adapters_and_records_their_accuracy(
    ensemble_store,
):
    tmp_path, url, _, result = ensemble_store
    folder = tmp_path / "models" / "reward-r1"
    assert ensemble_folders(folder) == [folder, member_folder(folder, 1), member_folder(folder, 2)]
    adapters = [saved_adapter(f) for f in ensemble_folders(folder)]
    # each member starts from its own seed: no two are the same model
    assert min(_distance(a, b) for i, a in enumerate(adapters) for b in adapters[i + 1 :]) > 1e-3
    with Session(make_engine(url)) as s:
        row = s.exec(select(RewardModel).where(RewardModel.name == "r1")).one()
        accuracies = row.metrics["ensemble_accuracy"]
    assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
    assert result.metrics["ensemble_accuracy"] == accuracies


def test_members_are_read_for_disagreement_and_scores_stay_the_models_own(ensemble_store):
    tmp_path, _, checkpoint, _ = ensemble_store
    base, tokenizer = load_base(checkpoint, home=tmp_path, device="cpu")
    scorer = PoolScorer(PolicyPool(base, tokenizer), max_length=64)
    folder = str(tmp_path / "models" / "reward-r1")
    sets = [([{"role": "user", "content": "question 99 sea"}], ["a good answer.", "the fox.", "good good."])]
    [members] = scorer.score_members(folder, sets)
    assert [len(m) for m in members] == [3, 3, 3]
    [own] = scorer.score(folder, sets)
    assert own == pytest.approx([m[0] for m in members], abs=1e-5)  # PPO's reward: member 0 alone
    assert disagreement(members) > 0.0


def test_a_continued_ensemble_continues_each_member_from_the_parents(ensemble_store):
    tmp_path, url, checkpoint, _ = ensemble_store
    add_ranked_sets(url, 8, seed=1, first=100)
    run(_config(tmp_path, url, checkpoint, ensemble=3, continue_from="latest", learning_rate=1e-9))
    old, new = (ensemble_folders(tmp_path / "models" / name) for name in ("reward-r1", "reward-r2"))
    assert len(new) == 3
    for k in range(3):  # at a learning rate of 1e-9 each member is still its parent
        others = [_distance(saved_adapter(new[k]), saved_adapter(old[j])) for j in range(3) if j != k]
        assert _distance(saved_adapter(new[k]), saved_adapter(old[k])) < min(others) / 100


def test_the_generator_reads_an_ensembles_disagreement(ensemble_store):
    tmp_path, url, checkpoint, _ = ensemble_store
    engine = make_engine(url)
    with Session(engine) as s:
        add_prompts(session=s, conversations=[[{"role": "user", "content": f"new {i}"}] for i in range(6)])
        set_selection(session=s, mode="uncertainty", random_share=0.0, oversample=3)
    base, tokenizer = load_base(checkpoint, home=tmp_path, device="cpu")
    sampling = SamplingParams(max_new_tokens=6, temperature=1.0, seed=0)
    config = PregenConfig(buffer=30, n=3, batch_prompts=2, sampling=sampling)
    assert PregenWorker(engine=engine, pool=PolicyPool(base, tokenizer), config=config).step() == 2
    with Session(engine) as s:
        kept = [r for r in s.exec(select(CompletionSet).order_by(col(CompletionSet.id))).all() if r.selection]
    assert len(kept) == 2
    assert all(r.selection and r.selection["measure"] == "disagreement" for r in kept)


def test_an_ensemble_needs_rankloops_own_loop_on_lora(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=4)
    for bad in ({"trainer": "trl"}, {"full_finetune": True}):
        with pytest.raises(ValueError, match="ensemble members are LoRA adapters trained by rankloop's loop"):
            run(_config(tmp_path, url, checkpoint, ensemble=2, **bad))


def test_rankloop_reward_ensemble_from_the_command_line(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=8)
    argv = ["reward", "--ensemble", "2", "--epochs", "1", "--max_length", "64", "--eval_fraction", "0",
            "--device", "cpu", "--home", str(tmp_path), "--db", url, "--model", checkpoint]  # fmt: skip
    main(argv)
    assert len(ensemble_folders(tmp_path / "models" / "reward-r1")) == 2
    with pytest.raises(SystemExit, match="ensemble = 9 is out of range: it must be at least 1 and at most 8"):
        main([argv[0], "--ensemble", "9", *argv[3:]])  # checked before anything trains
