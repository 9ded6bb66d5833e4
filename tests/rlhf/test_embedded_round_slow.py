"""One short round on the embedded default (SmolLM2-135M-Instruct) through the job runner, as `make run` users get it:
generate sets, simulated labelers rank them, reward model + PPO in a separate process, v1 becomes current and
writes the next sets. Slow (a few minutes on 2 cores, and the first run prepares the model): `make test-slow`."""

import os
from pathlib import Path

import pytest
from simulate import SimulatedLabeler, label_waiting_sets
from sqlmodel import Session, select

from labeler.records.policies import current_policy, ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.settings import set_labels_needed
from labeler.store.store import add_prompts
from labeler.store.tables import CompletionSet, RewardModel, TrainingRound
from models.embedded import home_sharing_cache
from models.generation import SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from rlhf.serve.jobs import JobRunner
from rlhf.serve.pregen import PregenConfig, PregenWorker

pytestmark = pytest.mark.slow
ROUND = {
    "reward_epochs": 1,
    "reward_max_length": 128,
    "ppo_steps": 2,
    "ppo_batch_prompts": 4,
    "ppo_max_new_tokens": 24,
    "device": "cpu",
}


def test_a_round_on_the_embedded_default(tmp_path):
    # prepare the model once, shared with `make run`
    home = home_sharing_cache(tmp_path / "home", Path(os.environ.get("RANKLOOP_HOME", "runs")))
    url = f"sqlite:///{home / 'rankloop.db'}"
    engine = make_engine(url)
    with Session(engine) as s:
        add_prompts(
            session=s,
            conversations=[
                [{"role": "user", "content": f"Name one use of the number {i}."}] for i in range(12)
            ],
            eval_fraction=0.2,
        )
        ensure_initial_policy(session=s, base_model="default")
        set_labels_needed(session=s, k=2)
    base, tokenizer = load_base("default", home=home, device="cpu")
    sampling = SamplingParams(max_new_tokens=24, temperature=0.8, seed=0)
    worker = PregenWorker(
        engine=engine, pool=PolicyPool(base, tokenizer), config=PregenConfig(buffer=6, n=4, sampling=sampling)
    )
    while worker.step():
        pass
    labelers = [SimulatedLabeler("a", noise=0.1, seed=1), SimulatedLabeler("b", noise=0.3, seed=2)]
    assert label_waiting_sets(engine, labelers) == 12
    runner = JobRunner(engine=engine, db_url=url, home=home)
    job_id = runner.start("round", ROUND)
    assert runner.wait(job_id, timeout=1500) == "succeeded"
    with Session(engine) as s:
        v1 = current_policy(session=s)
        lineage = s.exec(select(TrainingRound).where(TrainingRound.job_id == job_id)).one()
        reward = s.get(RewardModel, lineage.reward_model_id)
        assert v1.version == 1 and lineage.new_version_id == v1.id and len(lineage.ranking_ids) == 12
        assert (
            0.0 <= reward.metrics["accuracy"] <= 1.0 and Path(v1.adapter_path, "adapter_config.json").exists()
        )
    while worker.step():
        pass
    assert worker.pool.active == "v1"
    with Session(engine) as s:
        assert len(s.exec(select(CompletionSet).where(CompletionSet.policy_version_id == v1.id)).all()) == 6
