"""Two full rounds on the tiny model with simulated labelers, through the job runner: generate, label, reward,
PPO, switch; then a killed round leaves the current version alone."""

import os
import signal
import time

from simulate import SimulatedLabeler, ensure_accounts, label_waiting_sets
from sqlmodel import Session, select

from labeler.records.policies import current_policy, ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.settings import set_labels_needed
from labeler.store.store import add_prompts
from labeler.store.tables import CompletionSet, Job, PolicyVersion, RewardModel, TrainingRound
from models.generation import SamplingParams
from models.loading import load_base
from models.policy import PolicyPool
from models.tiny import save_tiny_checkpoint
from rlhf.serve.jobs import JobRunner
from rlhf.serve.pregen import PregenConfig, PregenWorker

ROUND = {  # PPO at tiny sizes; switch=auto, as the gate would not judge 2 held-out sets
    "optimizer": "ppo",
    "switch": "auto",
    "reward_epochs": 2,
    "reward_max_length": 64,
    "reward_learning_rate": 3e-3,
    "ppo_steps": 2,
    "ppo_batch_prompts": 4,
    "ppo_max_new_tokens": 8,
    "device": "cpu",
}
LABELERS = [SimulatedLabeler("a", noise=0.1, seed=1), SimulatedLabeler("b", noise=0.5, seed=2)]


def fill(worker: PregenWorker) -> None:
    while worker.step():
        pass


def test_two_rounds_then_a_killed_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'rankloop.db'}"
    engine = make_engine(url)
    checkpoint = str(save_tiny_checkpoint(tmp_path / "tiny"))
    with Session(engine) as s:
        add_prompts(
            session=s,
            conversations=[[{"role": "user", "content": f"question number {i}"}] for i in range(24)],
            eval_fraction=0.2,
        )
        ensure_initial_policy(session=s, base_model=checkpoint)
        set_labels_needed(session=s, k=2)
    base, tokenizer = load_base(checkpoint, home=tmp_path, device="cpu")
    worker = PregenWorker(
        engine=engine,
        pool=PolicyPool(base, tokenizer),
        config=PregenConfig(
            buffer=8, n=4, sampling=SamplingParams(max_new_tokens=12, temperature=1.0, seed=0)
        ),
    )
    runner = JobRunner(engine=engine, db_url=url, home=tmp_path)

    trained: dict[int, int] = {}
    for round_number in (1, 2):
        fill(worker)
        assert label_waiting_sets(engine, LABELERS) == 16  # 8 sets x 2 labelers
        job_id = runner.start("round", ROUND)
        assert runner.wait(job_id, timeout=600) == "succeeded", session_job(engine, job_id).log_tail
        with Session(engine) as s:
            current = current_policy(session=s)
            assert current.version == round_number
            lineage = s.exec(select(TrainingRound).where(TrainingRound.job_id == job_id)).one()
            assert lineage.new_version_id == current.id and lineage.reward_model_id is not None
            gate = lineage.metrics["gate"]
            assert (
                gate["decision"] == "not evaluated" and gate["switched"] and current.metrics["gate"] == gate
            )
            assert (
                lineage.parent_version_id == current.parent_id
                and len(lineage.ranking_ids) == 16 * round_number
            )
            rm = s.get(RewardModel, lineage.reward_model_id)
            # round 2 continues round 1's reward model on the 8 sets ranked since and again on those r1 trained
            # on (held-out ones evaluate it)
            assert rm.continued_from == (None if round_number == 1 else "r1")
            assert rm.metrics["seen_sets"] == 8 * round_number
            trained[round_number] = rm.metrics["train_groups"]
            assert trained[round_number] - rm.metrics["replayed_sets"] <= 8
            assert rm.metrics["replayed_sets"] == (0 if round_number == 1 else trained[1])
    fill(worker)
    with Session(engine) as s:
        v2 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 2)).one()
        fresh = s.exec(select(CompletionSet).where(CompletionSet.policy_version_id == v2.id)).all()
        assert len(fresh) == 8 and worker.pool.active == "v2"
    new_id = ensure_accounts(engine, [SimulatedLabeler("c")])["c"]
    with Session(engine) as s:  # a new labeler is served a set from v2 first
        assert lease_next_set(session=s, user_id=new_id).set.policy_version_id == v2.id

    label_waiting_sets(engine, LABELERS)
    job_id = runner.start("round", {**ROUND, "ppo_steps": 500})
    deadline = time.monotonic() + 300
    while session_job(engine, job_id).progress == 0 or session_job(engine, job_id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    os.kill(session_job(engine, job_id).pid, signal.SIGKILL)
    assert runner.wait(job_id, timeout=60) == "failed"
    with Session(engine) as s:
        assert current_policy(session=s).version == 2
        assert s.exec(select(PolicyVersion).where(PolicyVersion.version == 3)).first() is None


def session_job(engine, job_id):
    with Session(engine) as s:
        return s.get(Job, job_id)
