"""Over-optimisation monitor for PPO: the reward model is a proxy, and pushed far enough the policy finds what it
rewards that people do not (Gao et al., 2022). Where a gold judge exists (a rule such as the prompt's verifiable
instructions, scored on every rollout), each step records proxy and gold side by side with the KL, and the
run stops early once the gold score has fallen for `patience` checks in a row while the proxy still rose.

    monitor = OveroptimisationMonitor(patience=3, window=2)
    for step ...:
        if monitor.observe(step, proxy=reward, gold=gold):
            break                      # monitor.stopped_at, monitor.reason say where and why
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from labeler.labels.instructions import Instruction, instructions_then_ending
from rlhf.train.ppo_step import Rollout

# A gold judge scores one rollout: (rollout, each sequence's instructions) -> one score per sequence.
GoldFn = Callable[[Rollout, Sequence[Sequence[Instruction]]], list[float]]


GOLD_JUDGES = {"instructions": instructions_then_ending}  # rule judges a PPO run can score its rollouts by


def preference_judge(name: str, tokenizer) -> GoldFn:
    """A gold judge by name (`GOLD_JUDGES`): `instructions` scores each rollout by the prompt's verifiable
    instructions met, then by whether it ends well."""
    if name not in GOLD_JUDGES:
        raise ValueError(f"unknown gold judge {name!r}; use one of {', '.join(GOLD_JUDGES)}")
    preference = GOLD_JUDGES[name]

    def judge(ro: Rollout, instructions: Sequence[Sequence[Instruction]]) -> list[float]:
        tokens = ro.responses.masked_fill(ro.response_mask == 0, tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
        ended = ro.ended.tolist()
        return [
            preference(text, "eos" if end else "length", rules)
            for text, end, rules in zip(texts, ended, instructions, strict=True)
        ]

    return judge


def gold_mean(judge: GoldFn, ro: Rollout, instructions: Sequence[Sequence[Instruction]]) -> float:
    scores = judge(ro, instructions)
    return float(torch.tensor(scores, dtype=torch.float64).mean()) if scores else 0.0


@dataclass
class OveroptimisationMonitor:
    """Compares the means of proxy and gold over consecutive windows of `window` steps; one window whose gold
    mean is below the previous one's while its proxy mean is above is a strike, and `patience` strikes in a
    row stop the run (when `stop` is on; otherwise they are only recorded)."""

    patience: int = 3
    window: int = 2
    stop: bool = True
    strikes: int = 0
    stopped_at: int | None = None
    reason: str = ""
    _proxy: list[float] = field(default_factory=list)
    _gold: list[float] = field(default_factory=list)
    _last: tuple[float, float] | None = None

    def observe(self, step: int, *, proxy: float, gold: float) -> bool:
        """Record one step; True when the run should stop here."""
        self._proxy.append(proxy)
        self._gold.append(gold)
        if len(self._proxy) < self.window:
            return False
        means = (sum(self._proxy) / self.window, sum(self._gold) / self.window)
        self._proxy, self._gold = [], []
        last, self._last = self._last, means
        if last is None:
            return False
        falling = means[1] < last[1] and means[0] > last[0]
        self.strikes = self.strikes + 1 if falling else 0
        if self.strikes >= self.patience and self.stopped_at is None:
            self.stopped_at = step
            self.reason = (
                f"gold score fell for {self.strikes} checks in a row while the reward model's score rose "
                f"(window {self.window} steps): stopped at step {step}"
            )
            return self.stop
        return False
