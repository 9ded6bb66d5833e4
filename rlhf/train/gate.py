"""The gate before a round's switch: the new version becomes current only when what can be measured without new
labels says it is no worse than its parent, and the verdict says why, line by line. Torch-free: it reads the
figures the stages recorded.

    verdict = judge(optimizer="dpo", final=result.metrics, reward=None, kl_fit=result.kl_budget)
    verdict.decision        # "pass" | "fail" | "not evaluated"
    print("\\n".join(verdict.lines()))

Checks:
- held-out accuracy: the reward model's (PPO) or the policy's implicit reward's (DPO, beta x log pi/pi_ref) on the
  strict consensus pairs of held-out prompts (held out across rounds, so the evaluation grows with the store).
  Fewer than `MIN_PAIRS` pairs: "not evaluated" (no automatic switch); else its 95% Wilson interval must lie above
  0.5. 80 pairs is where a model right 2 times in 3 is told from chance (interval 0.56-0.76).
- KL from v0 within the round's budget, where one is set (the budget fit's own measure).
- where the round measured them: the newest reward model's mean score of the new version's answers to held-out
  prompts against the parent's (paired; the new one must not be worse beyond its interval).
- with a rule judge in PPO's reward: the checks met by both versions' answers to the held-out prompts, paired. As
  the whole reward (reward_source rules) it stands in for the accuracy: the new version must show a gain (the
  interval of the difference above 0) to pass; beside a reward model it must not be worse.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from labeler.labels.winrate import wilson_interval
from labeler.records.reward_models import RewardFacts

MIN_PAIRS = 80  # strict held-out pairs: the 95% interval of 2/3 right then excludes 0.5
Status = Literal["pass", "fail", "not measured"]
Decision = Literal["pass", "fail", "not evaluated"]
Switch = Literal["gate", "auto", "manual"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    line: str
    kind: Literal["accuracy", "kl", "score"] = "accuracy"


@dataclass(frozen=True)
class Verdict:
    """The gate's decision, its checks, and whether the round switched (with `switch` the round's setting)."""

    decision: Decision
    checks: list[Check] = field(default_factory=list)
    switch: Switch = "gate"
    switched: bool = False

    def reason(self) -> str:
        """One sentence: what the round did with its version and why."""
        how = {
            "auto": "switch=auto: made current whatever the gate says",
            "manual": "switch=manual: an admin decides",
            "gate": "made current"
            if self.switched
            else "kept as a candidate (an admin may still switch to it)",
        }[self.switch]
        return f"gate: {self.decision}; {how}"

    def lines(self) -> list[str]:
        return [self.reason(), *(f"  [{c.status}] {c.name}: {c.line}" for c in self.checks)]

    def as_dict(self) -> dict:
        return {**asdict(self), "lines": self.lines()}


def accuracy_check(accuracy: float | None, pairs: int, what: str) -> Check:
    """Above chance with its 95% interval, on at least MIN_PAIRS strict held-out pairs."""
    name = f"held-out accuracy ({what})"
    if accuracy is None or math.isnan(accuracy) or pairs < MIN_PAIRS:
        return Check(
            name,
            "not measured",
            f"{pairs} strict held-out pairs, fewer than the {MIN_PAIRS} that tell a 2-in-3 model from chance: "
            "not evaluated (label more sets, or hold out more prompts with eval_fraction)",
        )
    low, high = wilson_interval(accuracy * pairs, pairs)
    ok = low > 0.5
    verb = "above" if ok else "not above"
    return Check(
        name,
        "pass" if ok else "fail",
        f"{accuracy:.3f} on {pairs} pairs (95% {low:.3f}-{high:.3f}), {verb} chance",
    )


def kl_check(fit: dict | None) -> Check:
    """The KL budget's own verdict on its last measure; not measured without a budget."""
    if not fit:
        return Check("KL from v0", "not measured", "no KL budget set for this round", "kl")
    ok = bool(fit.get("within"))
    return Check(
        "KL from v0",
        "pass" if ok else "fail",
        f"{fit['kl']:.2f} nats against a budget of {fit['budget']:g} (update scaled x{fit['scale']:.2f})",
        "kl",
    )


def paired_difference(
    new: Sequence[float], parent: Sequence[float], means: str = "+.3f", digits: int = 3
) -> tuple[float, float, str]:
    """The mean per-answer difference new - parent, the half-width of its 95% interval, and the line that says
    both means (format `means`) and the interval (`digits` decimals); at least 2 pairs."""
    diffs = [a - b for a, b in zip(new, parent, strict=True)]
    mean, half = statistics.fmean(diffs), 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs))
    d = f"+.{digits}f"
    line = (
        f"{statistics.fmean(new):{means}} vs {statistics.fmean(parent):{means}} on {len(diffs)} held-out answers "
        f"(difference {mean:{d}}, 95% {mean - half:{d}} to {mean + half:{d}})"
    )
    return mean, half, line


def score_check(new: Sequence[float], parent: Sequence[float], reward_model: str | None) -> Check:
    """Paired per held-out answer: the reward model's mean score of the new version's answers minus the parent's;
    fails only when the interval of the difference lies wholly below 0."""
    name = f"reward model {reward_model or ''} score vs parent".replace("  ", " ")
    if not new or len(new) != len(parent) or len(new) < 2:
        return Check(
            name, "not measured", "no held-out answers scored (no reward model, or no eval prompts)", "score"
        )
    mean, half, line = paired_difference(new, parent)
    ok = mean + half >= 0
    return Check(name, "pass" if ok else "fail", line + ("" if ok else ": worse than the parent"), "score")


def rules_check(rules: dict) -> Check:
    """A rule judge's checks met by the new version's held-out answers against the parent's (paired). As the whole
    reward (`alone`) it must show a gain; else it must not be worse."""
    new, parent, alone = (
        list(rules.get("new") or []),
        list(rules.get("parent") or []),
        bool(rules.get("alone")),
    )
    name = f"rule judge {rules.get('judge')} checks met vs parent"
    kind: Literal["accuracy", "score"] = "accuracy" if alone else "score"
    if len(new) < 2 or len(new) != len(parent):
        return Check(name, "not measured", "fewer than 2 held-out answers checked (no eval prompts)", kind)
    mean, half, line = paired_difference(new, parent, means=".2f", digits=2)  # checks met: whole numbers
    if mean + half < 0:
        return Check(name, "fail", line + ": worse than the parent", kind)
    if alone and mean - half <= 0:
        return Check(name, "not measured", line + ": no gain shown", kind)
    return Check(name, "pass", line, kind)


def decide(checks: list[Check], switch: Switch) -> Verdict:
    """Fail if any check failed; not evaluated if the accuracy had too few pairs; else pass. Switches with
    switch=auto always, with gate on a pass only, with manual never."""
    if any(c.status == "fail" for c in checks):
        decision: Decision = "fail"
    elif not any(c.kind == "accuracy" and c.status == "pass" for c in checks):
        decision = "not evaluated"
    else:
        decision = "pass"
    switched = switch == "auto" or (switch == "gate" and decision == "pass")
    return Verdict(decision, checks, switch, switched)


def judge(
    *,
    optimizer: str,
    final: dict,
    reward: RewardFacts | None,
    kl_fit: dict | None,
    switch: Switch = "gate",
    scores: tuple[Sequence[float], Sequence[float], str | None] | None = None,
    rules: dict | None = None,
) -> Verdict:
    """The verdict on a round from its recorded figures: `final` the optimiser's last metrics (DPO's carry
    heldout_accuracy/heldout_pairs), `reward` the PPO round's reward model's facts (a model evaluated on its
    training sets has no held-out accuracy), `kl_fit` the budget fit, `scores`
    (new, parent, reward model name) where the round scored both versions' held-out answers, `rules` a rule judge's
    checks met by both (PPO's `rules_scores`), which replaces the reward model's accuracy when it is the whole
    reward."""
    if rules and rules.get("alone"):
        check = rules_check(rules)
    elif optimizer == "dpo":
        accuracy = final.get("heldout_accuracy")
        check = accuracy_check(accuracy, int(final.get("heldout_pairs") or 0), "DPO's implicit reward")
    else:
        held = reward if reward is not None and reward.heldout_sets else RewardFacts()
        check = accuracy_check(held.accuracy, held.heldout_pairs, "reward model")
    checks = [check, kl_check(kl_fit)]
    if scores is not None:
        checks.append(score_check(*scores))
    if rules and not rules.get("alone"):
        checks.append(rules_check(rules))
    return decide(checks, switch)
