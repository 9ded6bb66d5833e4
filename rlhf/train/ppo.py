"""PPO stage: update the current policy version with LoRA against a reward model, a rule judge's checks, or both,
on one shared base.

    rankloop ppo [--steps 20] [--batch_prompts 8] [--kl_coef 0.05] [--reward_model r3] ...
    rankloop ppo --reward_source rules --rules_judge house-style     # a rule judge's checks met as the reward
    python -m rlhf.train.ppo --home runs          # the same; also runs under `accelerate launch`

Each step: rollout (sample responses from the policy), scoring (reward model at the last real token; per-token
KL to the reference, k1 or k3, times an adaptive or fixed coefficient), advantages (GAE, whitened), update
(clipped policy and value losses, entropy bonus, several epochs of minibatches with an approximate-KL early
stop). `--advantage group` samples group_size answers per prompt and scores each against the mean of the
others to the same prompt (RLOO: no value head, the KL penalty on the whole sequence). The result is saved
as policy version K+1 (parent K, the reward model used), with metrics and samples before and after. A crash or
cancel leaves the current version unchanged.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator

from labeler.io.instruction_prompts import stored_instructions
from labeler.labels.instructions import Instruction
from labeler.store.db import default_url, make_engine
from models.loading import load_base
from rlhf.train.configs import PPOConfig
from rlhf.train.overopt import GoldFn, OveroptimisationMonitor, gold_mean, preference_judge
from rlhf.train.policy_stage import budget_start, keep_within_budget, read_inputs, samples, save_version
from rlhf.train.ppo_model import POLICY, SharedModel, build_shared, reward_scores, save_policy
from rlhf.train.ppo_step import Rollout, StepStats, ppo_update, rollout, score_rollout
from rlhf.train.progress import ConsoleReporter, Reporter
from rlhf.train.rules_reward import RulesTerm, load_rules_term
from rlhf.train.scoring import encode, render_dialogue

logger = logging.getLogger(__name__)
RewardFn = Callable[[SharedModel, Rollout], torch.Tensor]


@dataclass
class PPOResult:
    name: str
    path: Path
    version: int
    metrics: dict
    history: list[dict]
    seconds: float
    kl_budget: dict | None = (
        None  # the KL budget's fit (policy_stage.keep_within_budget), None without a budget
    )


def train(
    shared: SharedModel,
    tokenizer,
    prompts: list[list[dict]],
    config: PPOConfig,
    reporter: Reporter,
    reward_fn: RewardFn,
    start_coef: float | None = None,
    gold: Gold | None = None,
    rules: RulesTerm | None = None,
) -> tuple[list[dict], OveroptimisationMonitor | None]:
    """The PPO loop; returns one metrics dict per step, and the over-optimisation monitor when a gold judge
    (`gold`: the judge and each train prompt's instructions) scored the rollouts. `rules`: a rule judge's checks
    met, times its weight, added to each answer's reward (the `rules` figure: their mean per answer).

    `batch_prompts` and `minibatch` are global: under N processes (`accelerate launch`, torchrun) each draws
    the same batch of prompts and rolls out its 1/N share, advantages are whitened over the whole batch, the
    gradients are averaged (DDP) and the logged figures are means over all processes, so a run with N
    processes follows the same recipe as one process with the whole batch."""
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, cpu=config.device == "cpu")
    local = per_process(config, accelerator.num_processes)
    start_coef = start_coef if start_coef is not None else config.kl_coef
    per_prompt = config.answers_per_prompt
    episodes = config.batch_prompts * per_prompt  # answers per step, over all processes
    params = [p for p in shared.policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    module, optimizer = accelerator.prepare(shared.policy, optimizer)
    from rlhf.train.ppo_math import AdaptiveKLController, FixedKLController, LengthTrend, round_horizon

    kl_ctl = (
        AdaptiveKLController(
            start_coef, config.target_kl, round_horizon(config.steps, episodes, config.kl_horizon)
        )
        if config.adaptive_kl
        else FixedKLController(config.kl_coef)
    )
    rng = random.Random(config.seed)  # the same draw on every process: the global batch
    share = slice(
        accelerator.process_index * local.batch_prompts, (accelerator.process_index + 1) * local.batch_prompts
    )
    total = (lambda t: accelerator.reduce(t, "sum")) if accelerator.num_processes > 1 else None
    monitor = (
        OveroptimisationMonitor(config.overopt_patience, config.overopt_window, config.overopt_stop)
        if gold is not None
        else None
    )
    trend = LengthTrend() if config.length_debias else None
    history: list[dict] = []
    reporter.start(config.steps, "ppo")
    for step in range(1, config.steps + 1):
        picks = [rng.randrange(len(prompts)) for _ in range(config.batch_prompts)][share]
        picks = [i for i in picks for _ in range(per_prompt)]  # a prompt's group stays together
        ro = rollout(shared.model, tokenizer, [prompts[i] for i in picks], local)
        scores = reward_fn(shared, ro)
        judged: dict[str, float] = {}
        if trend is not None:
            scores = trend.remove(ro.response_mask.sum(1), scores, total)
            judged["length_slope"] = trend.slope
        judged |= {"gold": gold_mean(gold.judge, ro, [gold.instructions[i] for i in picks])} if gold else {}
        if rules is not None:
            met = rules.scores(tokenizer, ro, picks)
            scores, judged["rules"] = scores + rules.weight * met, float(met.mean())
        scored = score_rollout(shared, ro, scores, kl_ctl.value, local, total)
        stats: StepStats = ppo_update(shared, module, optimizer, accelerator, ro, scored, local, params)
        figures = mean_over_processes(accelerator, {**scored.metrics(), **judged, **stats.metrics()})
        kl_ctl.update(figures["kl"], episodes)
        metrics = {"step": step, **figures, "kl_coef": kl_ctl.value}
        history.append(metrics)
        reporter.step(metrics)
        stop = monitor is not None and monitor.observe(step, proxy=figures["reward"], gold=figures["gold"])
        if step % config.log_every == 0 or step == config.steps or stop:
            reporter.log(metrics)
        if stop:
            logger.warning("ppo: %s", monitor.reason if monitor else "")
            break
    return history, monitor


@dataclass(frozen=True)
class Gold:
    """A gold judge and each train prompt's instructions (what the judge checks)."""

    judge: GoldFn
    instructions: list[list[Instruction]]


def per_process(config: PPOConfig, processes: int) -> PPOConfig:
    """The config one of `processes` processes runs with: its share of the batch and of each minibatch."""
    if processes == 1:
        return config
    for name in ("batch_prompts", "minibatch"):
        if getattr(config, name) % processes:
            raise ValueError(
                f"{name}={getattr(config, name)} does not split evenly over {processes} processes: "
                f"use a multiple of {processes}"
            )
    return replace(
        config, batch_prompts=config.batch_prompts // processes, minibatch=config.minibatch // processes
    )


def mean_over_processes(accelerator: Accelerator, figures: dict[str, float]) -> dict[str, float]:
    """Each figure averaged over the processes (the same dict on every one); unchanged for one process."""
    if accelerator.num_processes == 1:
        return figures
    means = accelerator.reduce(torch.tensor(list(figures.values()), dtype=torch.float64), "mean")
    return dict(zip(figures, means.tolist(), strict=True))


def reward_model_fn(shared: SharedModel, ro: Rollout) -> torch.Tensor:
    return reward_scores(shared, ro.input_ids, ro.attention_mask)


def no_reward_model(shared: SharedModel, ro: Rollout) -> torch.Tensor:
    """0 for every answer: with reward_source=rules the judge's checks are the whole reward."""
    return torch.zeros(ro.input_ids.shape[0], device=ro.input_ids.device)


def sample_scores(shared: SharedModel, tokenizer, answers: list[dict]) -> list[float]:
    """The reward model's scores of greedy answers to the eval prompts (`samples`): the gate compares the
    parent's (before training) with the new version's (after); [] without a reward model."""
    if shared.reward_head is None or not answers:
        return []
    texts = [render_dialogue(tokenizer, a["messages"], a["response"]) for a in answers]
    batch = encode(tokenizer, texts, 1024, shared.model.device)
    with torch.no_grad():
        return reward_scores(shared, batch["input_ids"], batch["attention_mask"]).float().tolist()


def rules_sample_scores(
    rules: RulesTerm, before: list[dict], after: list[dict], instructions: list[list[dict]], alone: bool
) -> dict:
    """The rule judge's checks met by the parent's and the new version's answers to the sample prompts: what the
    round's gate compares for a rules reward."""
    return {
        "parent": rules.sample_scores(before, instructions),
        "new": rules.sample_scores(after, instructions),
        "judge": rules.judge,
        "alone": alone,  # the whole reward: the gate asks it to show a gain
    }


def run(
    config: PPOConfig,
    *,
    reporter: Reporter | None = None,
    job_id: int | None = None,
    reward_fn: RewardFn | None = None,
    gold_fn: GoldFn | None = None,
) -> PPOResult:
    reporter = reporter or ConsoleReporter()
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    engine = make_engine(config.db or default_url(Path(config.home)))
    if reward_fn is None and not config.uses_reward_model:
        reward_fn = no_reward_model
    inputs = read_inputs(
        engine,
        sample_count=config.sample_prompts,
        need_reward=reward_fn is None,
        reward_model=config.reward_model,
        parent_version=config.parent_version,
    )
    rules = load_rules_term(engine, config, inputs.prompts.train_instructions)
    base, tokenizer = load_base(inputs.parent.base_model, home=Path(config.home), device=config.device)
    shared = build_shared(
        base,
        policy_path=inputs.parent.adapter_path,
        reward_path=inputs.reward.adapter_path if reward_fn is None and inputs.reward is not None else None,
        reference=config.reference,
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
    )
    before = samples(shared.model, tokenizer, inputs.prompts.samples, config.max_new_tokens)
    anchor = budget_start(shared.model, config, continued=bool(inputs.parent.adapter_path), name=POLICY)
    carried = config.adaptive_kl and config.carry_kl_coef and inputs.parent_kl_coef
    start_coef = inputs.parent_kl_coef if carried and inputs.parent_kl_coef else config.kl_coef
    gold = (
        Gold(
            gold_fn or preference_judge(config.gold, tokenizer),
            [stored_instructions(r) for r in inputs.prompts.train_instructions],
        )
        if gold_fn is not None or config.gold != "none"
        else None
    )
    history, monitor = train(
        shared,
        tokenizer,
        inputs.prompts.train,
        config,
        reporter,
        reward_fn or reward_model_fn,
        start_coef,
        gold,
        rules,
    )
    budget = keep_within_budget(shared.model, tokenizer, inputs.prompts.train, config, reporter, anchor)
    reporter.start(1, "ppo samples and saving")
    after = samples(shared.model, tokenizer, inputs.prompts.samples, config.max_new_tokens)
    summary = {k: v for k, v in history[-1].items() if isinstance(v, float | int)} if history else {}
    alone, sample_rules = config.reward_source == "rules", inputs.prompts.sample_instructions
    checked = (
        {"rules_scores": rules_sample_scores(rules, before, after, sample_rules, alone)} if rules else {}
    )
    metrics = {
        "final": summary,
        "sample_scores": {  # held-out prompts' greedy answers, scored by the reward model: the round's gate
            "parent": sample_scores(shared, tokenizer, before),
            "new": sample_scores(shared, tokenizer, after),
            "reward_model": inputs.reward.name if inputs.reward and reward_fn is None else None,
        },
        **checked,
        "history": history,
        "samples_before": before,
        "samples_after": after,
        "config": asdict(config),
        "kl_coef_start": start_coef,
        "steps_done": len(history),
        **({"kl_budget": budget} if budget else {}),
    }
    if monitor is not None:
        metrics["overoptimisation"] = {
            "stopped_at": monitor.stopped_at,
            "reason": monitor.reason,
            "stopped": monitor.stopped_at is not None and config.overopt_stop,
        }
    version, folder = save_version(
        engine,
        inputs,
        home=Path(config.home),
        save=lambda folder: save_policy(shared, folder),
        weights=[p for p in shared.policy.parameters() if p.requires_grad],
        metrics=metrics,
        make_current=config.make_current,
        job_id=job_id,
    )
    reporter.step()
    reporter.close()
    return PPOResult(f"v{version}", folder, version, summary, history, time.perf_counter() - start, budget)


def main(argv: list[str] | None = None) -> None:
    from rlhf.train.stage import run_stage

    run_stage(PPOConfig, run, argv, kind="ppo")


if __name__ == "__main__":
    main()
