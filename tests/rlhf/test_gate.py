"""The gate before a round's switch (rlhf/train/gate.py): too few held-out pairs is "not evaluated", an accuracy whose
interval reaches 0.5, a KL over the budget or answers the reward model scores worse than the parent's is a fail,
and only a pass switches under switch=gate."""

from __future__ import annotations

import pytest

from labeler.records.reward_models import RewardFacts
from rlhf.train.gate import MIN_PAIRS, judge, score_check

WITHIN = {"kl": 3.6, "budget": 4.0, "scale": 0.7, "within": True}


def dpo(accuracy: float, pairs: int) -> dict:
    return {"heldout_accuracy": accuracy, "heldout_pairs": pairs}


def test_a_good_round_passes_and_switches():
    verdict = judge(optimizer="dpo", final=dpo(0.70, 120), reward=None, kl_fit=WITHIN)
    assert verdict.decision == "pass" and verdict.switched
    assert verdict.lines()[0] == "gate: pass; made current"
    assert "0.700 on 120 pairs (95% 0.613-0.775), above chance" in verdict.lines()[1]


def test_too_few_held_out_pairs_is_not_evaluated_and_keeps_the_parent():
    verdict = judge(optimizer="dpo", final=dpo(0.90, MIN_PAIRS - 1), reward=None, kl_fit=WITHIN)
    assert verdict.decision == "not evaluated" and not verdict.switched
    assert "fewer than the 80" in verdict.lines()[1]
    # a PPO round whose reward model had no held-out sets (evaluated on its training sets) is not evaluated either
    trained_on = RewardFacts(accuracy=None, heldout_pairs=0, heldout_sets=0)
    assert judge(optimizer="ppo", final={}, reward=trained_on, kl_fit=None).decision == "not evaluated"


@pytest.mark.parametrize(
    "final, fit",
    [
        (dpo(0.56, 100), WITHIN),  # 95% interval 0.46-0.65 reaches chance
        (dpo(0.75, 200), {**WITHIN, "kl": 4.3, "within": False}),  # over the KL budget
    ],
)
def test_a_round_that_cannot_show_it_helped_fails(final, fit):
    verdict = judge(optimizer="dpo", final=final, reward=None, kl_fit=fit)
    assert verdict.decision == "fail" and not verdict.switched
    assert verdict.lines()[0].startswith("gate: fail; kept as a candidate")


def test_answers_scored_worse_than_the_parents_fail_the_gate():
    worse = score_check([0.1, -0.2, 0.0, -0.1, 0.05, -0.3], [0.6, 0.4, 0.5, 0.7, 0.6, 0.5], "r2")
    assert worse.status == "fail" and "worse than the parent" in worse.line
    alike = score_check([0.5, 0.2, 0.7, 0.4], [0.4, 0.5, 0.6, 0.5], "r2")
    assert alike.status == "pass"
    reward = RewardFacts(accuracy=0.7, heldout_pairs=150, heldout_sets=30)
    scores = ([0.1, -0.2, 0.0, -0.1, 0.05, -0.3], [0.6, 0.4, 0.5, 0.7, 0.6, 0.5], "r2")
    assert judge(optimizer="ppo", final={}, reward=reward, kl_fit=None, scores=scores).decision == "fail"


def test_switch_auto_and_manual_override_the_decision_but_not_the_verdict():
    auto = judge(optimizer="dpo", final=dpo(0.5, 10), reward=None, kl_fit=None, switch="auto")
    manual = judge(optimizer="dpo", final=dpo(0.8, 300), reward=None, kl_fit=WITHIN, switch="manual")
    assert (auto.decision, auto.switched) == ("not evaluated", True)
    assert (manual.decision, manual.switched) == ("pass", False)
    assert manual.as_dict()["lines"][0] == "gate: pass; switch=manual: an admin decides"


def test_a_rule_judge_as_the_whole_reward_must_show_a_gain_and_beside_a_model_must_not_be_worse():
    ppo = {"optimizer": "ppo", "final": {}, "reward": None, "kl_fit": WITHIN}
    gain = {"new": [2, 2, 3, 2, 3, 2], "parent": [1, 1, 1, 1, 2, 1], "judge": "style", "alone": True}
    passed = judge(**ppo, rules=gain)
    assert passed.decision == "pass" and passed.switched
    assert any(
        "[pass] rule judge style checks met vs parent: 2.33 vs 1.17" in line for line in passed.lines()
    )
    level = {**gain, "new": [1, 2, 1, 1, 2, 1]}  # no gain shown: no automatic switch
    assert judge(**ppo, rules=level).decision == "not evaluated"
    worse = {**gain, "new": [0, 0, 0, 0, 1, 0]}
    assert judge(**ppo, rules=worse).decision == "fail"
    # beside a reward model it must only not be worse; the reward model's accuracy still earns the switch
    facts = RewardFacts(accuracy=0.8, heldout_pairs=MIN_PAIRS, heldout_sets=30)
    beside = judge(**{**ppo, "reward": facts}, rules={**level, "alone": False})
    assert beside.decision == "pass" and [c.kind for c in beside.checks] == ["accuracy", "kl", "score"]
    assert judge(**{**ppo, "reward": facts}, rules={**worse, "alone": False}).decision == "fail"
