"""One turn of the loop as one job: DPO on the ranked sets (the default), or a reward model (by default the
latest one, trained further on the sets ranked since; where there are none, used as it is) then PPO against it;
then the gate (rlhf/train/gate.py) judges the new version on what can be measured without new labels, and it becomes
current only on a pass (`switch=gate`, the default; `auto`: whatever the gate says; `manual`: an admin decides in
the policies tab). The round's lineage and the gate's verdict are recorded: rankings and sets used, reward model,
parent and new policy.

    rankloop round [--optimizer dpo|ppo] [--switch gate|auto|manual] [--ppo_steps 20] ...
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.records.policies import current_policy, policy_by_version, sample_scores
from labeler.records.reward_models import RewardRef, find_reward_model
from labeler.records.rounds import RoundLineage, finish_round, round_labels
from labeler.store.db import default_url, make_engine, read_session
from labeler.store.tables import id_of
from rlhf.train import dpo, ppo, reward, sft
from rlhf.train.configs import DPOConfig, PPOConfig, RewardConfig, RoundConfig, SFTConfig
from rlhf.train.gate import Verdict, judge
from rlhf.train.progress import ConsoleReporter, Reporter

logger = logging.getLogger(__name__)


@dataclass
class RoundResult:
    name: str
    path: Path
    metrics: dict
    reward_model: str | None
    version: int
    stage_seconds: dict
    reward_sets: int = 0  # sets the round's reward model trained on (0: it reused the newest one)
    dpo_sets: int = 0  # ranked sets whose pairs its DPO trained on
    sft_answers: int = 0  # best answers its SFT stage trained on (0: off, or nothing to learn yet)
    kl_budget: dict | None = None  # the version's KL budget fit (its seconds: stage_seconds["kl_budget"])
    gate: dict | None = (
        None  # the gate's verdict (rlhf/train/gate.Verdict.as_dict: decision, checks, lines, switched)
    )


def run(config: RoundConfig, *, reporter: Reporter | None = None, job_id: int | None = None) -> RoundResult:
    reporter = reporter or ConsoleReporter()
    engine = make_engine(config.db or default_url(Path(config.home)))
    with read_session(engine) as session:
        parent = current_policy(session=session)
        labels = round_labels(session=session)
    if parent is None:
        raise RuntimeError(
            "the store has no current policy version: start the app once, or run `rankloop generate`"
        )
    seconds: dict[str, float] = {}
    result: ppo.PPOResult | dpo.DPOResult
    common: dict[str, Any] = {
        "home": config.home,
        "db": config.db,
        "seed": config.seed,
        "device": config.device,
    }
    reward_name, reward_sets, dpo_sets = None, 0, 0
    start = time.perf_counter()
    tuned = sft_first(config, common, reporter, job_id)
    common["parent_version"] = tuned.version if tuned else None
    if tuned is not None:
        seconds["sft"], start = time.perf_counter() - start, time.perf_counter()
    if config.optimizer == "ppo":
        settings = config.stage_settings("ppo")
        if PPOConfig(**settings).uses_reward_model:  # reward_source=rules needs no reward model
            reward_name, reward_sets = train_reward(config, common, parent.base_model, reporter, job_id)
            seconds["reward"], start = time.perf_counter() - start, time.perf_counter()
        pcfg = PPOConfig(
            reward_model=reward_name, make_current=False, **common, **settings
        )  # the gate decides
        result = ppo.run(pcfg, reporter=reporter, job_id=job_id)
        seconds["ppo"] = time.perf_counter() - start
    else:
        dcfg = DPOConfig(
            include_imported=config.include_imported,
            make_current=False,
            **common,
            **config.stage_settings("dpo"),
        )
        result = dpo.run(dcfg, reporter=reporter, job_id=job_id)
        seconds["dpo"], dpo_sets = time.perf_counter() - start, result.train_sets
    if result.kl_budget:  # timed apart from the optimiser's stage: the estimate counts its work apart
        seconds["kl_budget"] = result.kl_budget["seconds"]
        seconds[config.optimizer] -= result.kl_budget["seconds"]
    verdict, reward_ref = judge_round(engine, config, result, reward_name)
    report_verdict(verdict, result.version)
    with Session(engine) as session:
        new = policy_by_version(session=session, version=result.version)
        assert new is not None, f"the stage registered v{result.version}"
        finish_round(
            session=session,
            new=new,
            gate=verdict.as_dict(),
            lineage=RoundLineage(
                optimizer=config.optimizer,
                parent_version_id=id_of(parent),
                new_version_id=id_of(new),
                labels=labels,
                reward_model_id=reward_ref.id if reward_ref else None,
                job_id=job_id,
                metrics={"final": result.metrics, "seconds": seconds},
            ),
        )
    return RoundResult(
        f"v{result.version}",
        result.path,
        result.metrics,
        reward_name,
        result.version,
        seconds,
        reward_sets=reward_sets,
        dpo_sets=dpo_sets,
        sft_answers=tuned.train_answers if tuned else 0,
        kl_budget=result.kl_budget,
        gate=verdict.as_dict(),
    )


def train_reward(
    config: RoundConfig, common: dict[str, Any], base_model: str, reporter: Reporter, job_id: int | None
) -> tuple[str, int]:
    """The round's reward model (name, sets trained on); with no set ranked since the newest one, that one as it
    is (0 sets)."""
    rcfg = RewardConfig(
        model=base_model,
        include_imported=config.include_imported,
        **{k: v for k, v in common.items() if k != "parent_version"},
        **config.stage_settings("reward"),
    )
    try:
        trained = reward.run(rcfg, reporter=reporter, job_id=job_id)
        return trained.name, trained.train_sets
    except reward.NothingNew as unchanged:  # no set ranked since the latest reward model: PPO uses it
        logger.warning("%s; this round's PPO uses %s as it is", unchanged, unchanged.name)
        return unchanged.name, 0


def sft_first(
    config: RoundConfig, common: dict[str, Any], reporter: Reporter, job_id: int | None
) -> sft.SFTResult | None:
    """With `sft` on: fine-tune on the best answers first (a candidate version, never current by itself) for the
    optimiser to go on from; None when off or when there is nothing to learn yet."""
    if not config.sft:
        return None
    scfg = SFTConfig(make_current=False, **common, **config.stage_settings("sft"))
    try:
        return sft.run(scfg, reporter=reporter, job_id=job_id)
    except sft.NothingToLearn as nothing:
        logger.warning("%s; this round skips its SFT stage", nothing)
        return None


def judge_round(
    engine: Engine,
    config: RoundConfig,
    result: ppo.PPOResult | dpo.DPOResult,
    reward_name: str | None,
) -> tuple[Verdict, RewardRef | None]:
    """The gate's verdict on the version the round registered (rlhf/train/gate.py), from what its stages recorded:
    the optimiser's held-out figures, the reward model's facts (a new one's or a reused one's), the KL budget fit,
    and for PPO the reward model's scores of both versions' answers to held-out prompts."""
    with read_session(engine) as session:
        reward_ref = find_reward_model(session=session, name=reward_name) if reward_name else None
        registered = policy_by_version(session=session, version=result.version)
        scores = sample_scores(registered) if registered else None
        rules = registered.metrics.get("rules_scores") if registered else None
    verdict = judge(
        optimizer=config.optimizer,
        final=result.metrics,
        reward=reward_ref.facts if reward_ref is not None else None,
        kl_fit=result.kl_budget,
        switch=config.switch,
        scores=scores,
        rules=rules,
    )
    return verdict, reward_ref


def report_verdict(verdict: Verdict, version: int) -> None:
    """The gate's verdict in the job log (and on the console), line by line."""
    for line in verdict.lines():
        logger.info("v%d %s", version, line.strip())


def main(argv: list[str] | None = None) -> None:
    from rlhf.train.stage import run_stage

    run_stage(RoundConfig, run, argv, kind="round")


if __name__ == "__main__":
    main()
