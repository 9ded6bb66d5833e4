"""The duration estimate under the launch forms (rlhf/serve/estimate.py): work counted from the settings and the store,
at the rate of the newest finished job that ran the stage, else the default rate."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, update

from labeler.labels.stats import TrainingData, training_data
from labeler.store.leasing import lease_next_set
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import Job, PolicyVersion, RewardModel, id_of
from rlhf.serve.estimate import CPU_RATES, GPU_SPEEDUP, TRL_DPO_PASSES, estimate_job
from tests.labeler.helpers import make_sets, make_user, make_version

DATA = TrainingData(ranked_sets=100, new_sets=40)
# a round that ran PPO at the PPO stage's own sizes (8 prompts a step, one answer each, 48 tokens)
PPO_STAGE_SIZES = {"ppo_batch_prompts": 8, "ppo_advantage": "gae", "ppo_max_new_tokens": 48}


def seconds_of(estimate) -> dict[str, float]:
    return {s.stage: s.seconds for s in estimate.stages}


def test_default_rates_count_the_work_of_each_stage():
    ppo = estimate_job("ppo", {"steps": 10, "batch_prompts": 8, "max_new_tokens": 50}, data=DATA, history=[], on_gpu=False)  # fmt: skip
    assert seconds_of(ppo) == {"ppo": pytest.approx(10 * 8 * 50 * 3 * CPU_RATES["ppo"])}  # 1 + 2 PPO epochs
    reward = estimate_job("reward", {"epochs": 2, "max_length": 128, "eval_fraction": 0.2}, data=DATA, history=[], on_gpu=False)  # fmt: skip
    assert seconds_of(reward) == {
        "reward": pytest.approx(80 * 2 * 128 * CPU_RATES["reward"])
    }  # 100 sets, 20% held out
    assert "default CPU rate" in reward.text() and reward.text().startswith("About ")
    ensemble = estimate_job("reward", {"epochs": 2, "max_length": 128, "eval_fraction": 0.2, "ensemble": 3}, data=DATA, history=[], on_gpu=False)  # fmt: skip
    assert ensemble.seconds == pytest.approx(3 * reward.seconds)  # three models on the same sets
    # PPO rounds with the reward stage's held-out share (the round holds out a quarter by default)
    ppo_round = {"optimizer": "ppo", "reward_eval_fraction": 0.1}
    round_ensemble = estimate_job(
        "round", {**ppo_round, "reward_ensemble": 2}, data=DATA, history=[], on_gpu=False
    )
    assert seconds_of(round_ensemble)["reward"] == pytest.approx(2 * 90 * 2 * 256 * CPU_RATES["reward"])
    # a round continues the newest reward model by default, on the 40 new sets and again on the 60 it met
    # (90 once the held-out share is off), at the round's own defaults; without replay, the 40 new ones only
    round_ = estimate_job("round", {**ppo_round, "ppo_steps": 4}, data=DATA, history=[], on_gpu=False)
    assert seconds_of(round_)["reward"] == pytest.approx(90 * 2 * 256 * CPU_RATES["reward"])
    new_only = estimate_job(
        "round", {**ppo_round, "ppo_steps": 4, "reward_replay": 0.0}, data=DATA, history=[], on_gpu=False
    )
    assert seconds_of(new_only)["reward"] == pytest.approx(36 * 2 * 256 * CPU_RATES["reward"])
    half = estimate_job(
        "round", {**ppo_round, "ppo_steps": 4, "reward_replay": 0.5}, data=DATA, history=[], on_gpu=False
    )
    assert seconds_of(half)["reward"] == pytest.approx(63 * 2 * 256 * CPU_RATES["reward"])
    # the round's PPO: 4 prompts a step, 4 answers each (group advantages), the generator's 72 tokens
    assert seconds_of(round_)["ppo"] == pytest.approx(4 * 4 * 4 * 72 * 3 * CPU_RATES["ppo"])
    grouped = estimate_job("round", {**ppo_round, "ppo_steps": 4, "ppo_group_size": 3}, data=DATA, history=[], on_gpu=False)  # fmt: skip
    # 3 answers per prompt instead of 4
    assert seconds_of(grouped)["ppo"] == pytest.approx(3 / 4 * seconds_of(round_)["ppo"])
    gae = estimate_job("round", {**ppo_round, "ppo_steps": 4, "ppo_advantage": "gae"}, data=DATA, history=[], on_gpu=False)  # fmt: skip
    assert seconds_of(gae)["ppo"] == pytest.approx(seconds_of(round_)["ppo"] / 4)  # one answer per prompt
    assert "kl_budget" in seconds_of(round_)  # PPO's version is fitted to the same budget as DPO's
    dpo_round = estimate_job("round", {}, data=DATA, history=[], on_gpu=False)  # the default: DPO, budget 4
    assert set(seconds_of(dpo_round)) == {"dpo", "kl_budget"}
    on_gpu = estimate_job("ppo", {}, data=DATA, history=[], on_gpu=True)
    assert on_gpu.seconds == pytest.approx(estimate_job("ppo", {}, data=DATA, history=[], on_gpu=False).seconds / GPU_SPEEDUP)  # fmt: skip


def test_the_rate_comes_from_the_newest_finished_job_that_ran_the_stage():
    old_ppo = Job(id=3, kind="ppo", status="succeeded", params={"steps": 2, "result": {"seconds": 999.0}})
    round_job = Job(
        id=7,
        kind="round",
        status="succeeded",
        params={
            "optimizer": "ppo",
            "ppo_steps": 5,
            **PPO_STAGE_SIZES,
            "result": {"stage_seconds": {"reward": 60.0, "ppo": 96.0}, "reward_sets": 30},
        },
    )
    failed = Job(id=9, kind="ppo", status="failed", params={"steps": 1})
    history = [old_ppo, round_job, failed]
    # round 7: PPO 96 s for 5 x 8 x 48 x 3 units; reward 60 s for 30 sets x 2 epochs x 256 tokens
    estimate = estimate_job("ppo", {"steps": 10}, data=DATA, history=history, on_gpu=False)
    assert estimate.seconds == pytest.approx(2 * 96.0) and "rate of job 7" in estimate.text()
    reward = estimate_job("reward", {"epochs": 1, "max_length": 512, "eval_fraction": 0.0}, data=DATA, history=history, on_gpu=False)  # fmt: skip
    assert reward.seconds == pytest.approx(60.0 / (30 * 2 * 256) * 100 * 512)
    # DPO's rate from a DPO job: 120 s for 50 sets x 1 epoch x 384 tokens
    dpo_job = Job(
        id=8, kind="dpo", status="succeeded", params={"result": {"seconds": 120.0, "train_sets": 50}}
    )
    dpo = estimate_job("round", {"dpo_eval_fraction": 0.1, "dpo_kl_budget": None}, data=DATA, history=[*history, dpo_job], on_gpu=False)  # fmt: skip
    assert dpo.seconds == pytest.approx(120.0 * 90 / 50) and "rate of job 8" in dpo.text()  # 10% held out
    # DPO on the parent's sets only reads as many sets as the current version wrote; trl's trainer does more work
    parent_data = TrainingData(ranked_sets=100, new_sets=40, current_sets=25)
    parent = estimate_job("round", {"dpo_data": "parent", "dpo_eval_fraction": 0.0, "dpo_kl_budget": None}, data=parent_data, history=[*history, dpo_job], on_gpu=False)  # fmt: skip
    assert parent.seconds == pytest.approx(120.0 * 25 / 50)
    trl = estimate_job("dpo", {"trainer": "trl", "eval_fraction": 0.0}, data=DATA, history=[*history, dpo_job], on_gpu=False)  # fmt: skip
    assert trl.seconds == pytest.approx(120.0 * 100 / 50 * TRL_DPO_PASSES)
    with pytest.raises(ValueError, match="steps = 0 is out of range"):
        estimate_job("ppo", {"steps": 0}, data=DATA, history=history)


def test_training_data_counts_ranked_sets_and_those_new_since_the_newest_reward_model(engine):
    with Session(engine) as s:
        alice = make_user(s, "alice")
        make_sets(s, 3, version_id=make_version(s).id)

        def rank_next(key: str, skipped: bool = False) -> None:
            leased = lease_next_set(session=s, user_id=id_of(alice))
            assert leased is not None
            ranks = {} if skipped else {id_of(c): k + 1 for k, c in enumerate(leased.completions)}
            submit_ranking(session=s, ranking=RankingIn(id_of(leased.set), id_of(alice), key, ranks=ranks, skipped=skipped))  # fmt: skip

        rank_next("a")
        s.add(RewardModel(name="r1", base_model="tiny"))
        s.commit()
        rank_next("b")
        rank_next("c", skipped=True)
        assert training_data(session=s) == TrainingData(ranked_sets=2, new_sets=1, current_sets=2)
        make_version(s, version=1)  # a new current version has written nothing yet
        s.exec(update(PolicyVersion).where(col(PolicyVersion.version) == 0).values(is_current=False))
        s.commit()
        assert training_data(session=s).current_sets == 0


def test_a_kl_budget_is_its_own_stage_counted_apart_from_the_optimiser():
    from rlhf.serve.estimate import BUDGET_MEASURES

    params = {"optimizer": "dpo", "dpo_kl_budget": 4.0, "dpo_max_new_tokens": 50, "dpo_eval_fraction": 0.0}
    fresh = seconds_of(estimate_job("round", params, data=DATA, history=[], on_gpu=False))
    assert fresh["kl_budget"] == pytest.approx(BUDGET_MEASURES * 32 * 2 * 50 * CPU_RATES["kl_budget"])
    assert "kl_budget" not in seconds_of(estimate_job("round", {"dpo_kl_budget": None}, data=DATA, history=[], on_gpu=False))  # fmt: skip
    assert "kl_budget" not in seconds_of(estimate_job("reward", {}, data=DATA, history=[], on_gpu=False))
    # a DPO job of 150 s, 30 of them its budget's 2 measures x 32 prompts x 2 answers of 50 tokens
    budget = {"seconds": 30.0, "answers": 128}
    job = Job(
        id=4,
        kind="dpo",
        status="succeeded",
        params={
            "kl_budget": 4.0,
            "max_new_tokens": 50,
            "result": {"seconds": 150.0, "train_sets": 50, "kl_budget": budget},
        },
    )
    seen = estimate_job("round", params, data=DATA, history=[job], on_gpu=False)
    assert seconds_of(seen)["kl_budget"] == pytest.approx(30.0 / (128 * 50) * BUDGET_MEASURES * 64 * 50)
    assert seconds_of(seen)["dpo"] == pytest.approx(120.0 * 100 / 50)  # the 120 s of training, not the 150
    assert "KL budget" in seen.text() and "rate of job 4" in seen.text()
    # a round records the budget's seconds apart from its optimiser's stage
    round_job = Job(
        id=5,
        kind="round",
        status="succeeded",
        params={
            "optimizer": "ppo",
            "ppo_kl_budget": 2.0,
            "ppo_steps": 5,
            **PPO_STAGE_SIZES,
            "result": {
                "stage_seconds": {"reward": 60.0, "ppo": 96.0, "kl_budget": 48.0},
                "reward_sets": 30,
                "kl_budget": {"seconds": 48.0, "answers": 192},
            },
        },
    )
    ppo = seconds_of(estimate_job("ppo", {"steps": 5, "kl_budget": 2.0}, data=DATA, history=[round_job], on_gpu=False))  # fmt: skip
    rate = 48.0 / (192 * 48)  # seconds per answer-token: 192 answers of at most 48 tokens (PPO's default)
    assert ppo["ppo"] == pytest.approx(96.0) and ppo["kl_budget"] == pytest.approx(
        rate * BUDGET_MEASURES * 64 * 48
    )


def test_sft_counts_one_best_answer_per_set_at_most_alone_and_in_a_round():
    sft = seconds_of(estimate_job("sft", {"epochs": 3, "max_length": 256, "eval_fraction": 0.2}, data=DATA, history=[], on_gpu=False))  # fmt: skip
    assert sft == {"sft": pytest.approx(80 * 3 * 256 * CPU_RATES["sft"])}  # 100 sets, 20% held out
    assert "sft" not in seconds_of(
        estimate_job("round", {}, data=DATA, history=[], on_gpu=False)
    )  # off by default
    tuned = seconds_of(estimate_job("round", {"sft": True, "sft_epochs": 1}, data=DATA, history=[], on_gpu=False))  # fmt: skip
    assert set(tuned) == {"sft", "dpo", "kl_budget"}
    assert tuned["sft"] == pytest.approx(
        75 * 1 * 384 * CPU_RATES["sft"]
    )  # the stage's defaults under the round's
    # the rate of a round that ran it: 40 s for 50 answers x 2 epochs x 384 tokens
    round_job = Job(
        id=5,
        kind="round",
        status="succeeded",
        params={
            "sft": True,
            "result": {"stage_seconds": {"sft": 40.0, "dpo": 100.0}, "sft_answers": 50, "dpo_sets": 60},
        },
    )
    rated = estimate_job("sft", {"eval_fraction": 0.0}, data=DATA, history=[round_job], on_gpu=False)
    assert rated.seconds == pytest.approx(40.0 / (50 * 2 * 384) * 100 * 2 * 384)
    assert rated.text().startswith("About ") and "SFT" in rated.text() and "rate of job 5" in rated.text()
    sft_job = Job(
        id=6, kind="sft", status="succeeded", params={"result": {"seconds": 10.0, "train_answers": 20}}
    )
    assert (
        "rate of job 6"
        in estimate_job("sft", {}, data=DATA, history=[round_job, sft_job], on_gpu=False).text()
    )
