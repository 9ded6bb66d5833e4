"""One turn of the loop as one job: a reward model on all usable rankings so far, then PPO (or DPO) from the
current policy against it, then the new version becomes current (automatically, or after an admin's review in
the policies tab). The round's lineage is recorded: rankings and sets used, reward model, parent and new policy.

    rankloop round [--optimizer ppo|dpo] [--auto_switch false] [--ppo_steps 20] ...
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from labeler.db import default_url, make_engine
from labeler.policies import current_policy
from labeler.tables import PolicyVersion, Ranking, RewardModel, TrainingRound
from rlhf import dpo, ppo, reward
from rlhf.configs import DPOConfig, PPOConfig, RewardConfig, RoundConfig
from rlhf.progress import ConsoleReporter, Reporter


@dataclass
class RoundResult:
    name: str
    path: Path
    metrics: dict
    reward_model: str | None
    version: int
    stage_seconds: dict


def run(config: RoundConfig, *, reporter: Reporter | None = None, job_id: int | None = None) -> RoundResult:
    reporter = reporter or ConsoleReporter()
    engine = make_engine(config.db or default_url(Path(config.home)))
    with Session(engine) as session:
        parent = current_policy(session=session)
        used = session.exec(
            select(col(Ranking.id), Ranking.set_id).where(col(Ranking.skipped).is_(False))
        ).all()
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
    reward_name = None
    start = time.perf_counter()
    if config.optimizer == "ppo":
        rcfg = RewardConfig(
            model=parent.base_model,
            include_imported=config.include_imported,
            **common,
            **config.stage_settings("reward"),
        )
        reward_name = reward.run(rcfg, reporter=reporter, job_id=job_id).name
        seconds["reward"] = time.perf_counter() - start
        start = time.perf_counter()
        pcfg = PPOConfig(
            reward_model=reward_name,
            make_current=config.auto_switch,
            **common,
            **config.stage_settings("ppo"),
        )
        result = ppo.run(pcfg, reporter=reporter, job_id=job_id)
        seconds["ppo"] = time.perf_counter() - start
    else:
        dcfg = DPOConfig(
            include_imported=config.include_imported,
            make_current=config.auto_switch,
            **common,
            **config.stage_settings("dpo"),
        )
        result = dpo.run(dcfg, reporter=reporter, job_id=job_id)
        seconds["dpo"] = time.perf_counter() - start
    with Session(engine) as session:
        new = session.exec(select(PolicyVersion).where(PolicyVersion.version == result.version)).one()
        rm = (
            session.exec(select(RewardModel).where(RewardModel.name == reward_name)).first()
            if reward_name
            else None
        )
        session.add(
            TrainingRound(
                job_id=job_id, optimizer=config.optimizer, parent_version_id=parent.id, reward_model_id=rm.id if rm else None, new_version_id=new.id,
                ranking_ids=[r for r, _ in used if r is not None], set_ids=sorted({s for _, s in used}), metrics={"final": result.metrics, "seconds": seconds},
            )
        )  # fmt: skip
        session.commit()
    return RoundResult(
        f"v{result.version}", result.path, result.metrics, reward_name, result.version, seconds
    )


def main(argv: list[str] | None = None) -> None:
    from rlhf.stage import run_stage

    run_stage(RoundConfig, run, argv, kind="round")


if __name__ == "__main__":
    main()
