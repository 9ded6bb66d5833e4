"""A rule judge's checks as PPO's reward (`reward_source` rules or model+rules): each answer scores the number of
the judge's checks it meets (labeler/labels/rules.py; `instructions` counts each of its prompt's instructions met),
alone or times `rules_weight` on top of the reward model's score. The same count on both versions' answers to the
held-out sample prompts is what the round's gate reads.

    term = load_rules_term(engine, config, train_instructions)   # None for reward_source=model
    term.scores(tokenizer, rollout, picks)                         # one float per answer
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from sqlalchemy.engine import Engine

from labeler.io.instruction_prompts import stored_instructions
from labeler.labels.instructions import Instruction
from labeler.labels.judges import judge_rules
from labeler.labels.rules import Rule, rules_scores
from labeler.store.db import read_session
from rlhf.train.configs import PPOConfig
from rlhf.train.ppo_step import Rollout


@dataclass(frozen=True)
class RulesTerm:
    judge: str
    rules: list[Rule]
    weight: float  # 1 when the rules alone are the reward
    instructions: list[list[Instruction]]  # each train prompt's

    def scores(self, tokenizer, ro: Rollout, picks: Sequence[int]) -> torch.Tensor:
        """Checks met by each answer of the rollout (`picks`: each answer's train prompt), as a float tensor."""
        tokens = ro.responses.masked_fill(ro.response_mask == 0, tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(tokens, skip_special_tokens=True)
        met = [
            rules_scores([text], self.rules, self.instructions[i])[0]
            for text, i in zip(texts, picks, strict=True)
        ]
        return torch.tensor(met, dtype=torch.float32, device=ro.input_ids.device)

    def sample_scores(self, answers: list[dict], instructions: Sequence[Sequence[dict]]) -> list[float]:
        """Checks met by each greedy answer to the sample prompts (`samples`' dicts, in the prompts' order)."""
        return [
            float(rules_scores([a["response"]], self.rules, stored_instructions(list(rules)))[0])
            for a, rules in zip(answers, instructions, strict=False)
        ]


def load_rules_term(
    engine: Engine, config: PPOConfig, train_instructions: list[list[dict]]
) -> RulesTerm | None:
    """The rules term of a PPO run, read once before training; None when the reward model alone scores."""
    if config.reward_source == "model" or not config.rules_judge:
        return None
    with read_session(engine) as session:
        rules = judge_rules(session=session, name=config.rules_judge)
    weight = 1.0 if config.reward_source == "rules" else config.rules_weight
    return RulesTerm(config.rules_judge, rules, weight, [stored_instructions(r) for r in train_instructions])
