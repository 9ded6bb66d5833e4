"""A causal LM as a pairwise judge: shown a request and two answers, asked which is better, its next-token
probabilities of the letters "A" and "B" give the probability that it prefers the first. One forward pass per
question, no sampling; callers ask both orders and average, which cancels a preference for a position.

    judge = PairwiseModel(model, tokenizer)
    p_first = judge.prefer_first(["...Answer A: ...Answer B: ...Reply with A or B."])   # [0.73]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models.generation import render_prompts

LETTERS = ("A", "B")


def letter_ids(tokenizer: PreTrainedTokenizerBase, letter: str) -> list[int]:
    """Every single-token spelling of `letter` the model may open its reply with ("A", " A")."""
    ids = {
        pieces[0]
        for spelled in (letter, " " + letter)
        if len(pieces := tokenizer.encode(spelled, add_special_tokens=False)) == 1
    }
    if not ids:
        raise ValueError(f"the tokenizer has no single token for {letter!r}: a pairwise judge needs one")
    return sorted(ids)


class PairwiseModel:
    """Asks a causal LM one question a row (a user turn, rendered with its chat template) and reads P("A")
    against P("B") at the reply's first token. `context` is entered around every forward pass (a PolicyPool
    passes its lock and adapters-off context, so the judge is the bare base)."""

    def __init__(
        self,
        model: PreTrainedModel | torch.nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        *,
        context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
        max_length: int = 1024,
        batch: int = 8,
    ):
        self.model, self.tokenizer, self.context = model, tokenizer, context
        self.max_length, self.batch = max_length, batch
        self.ids = [letter_ids(tokenizer, letter) for letter in LETTERS]

    def prefer_first(self, questions: Sequence[str]) -> list[float]:
        """P(the reply opens with "A") / (P("A") + P("B")) for every question."""
        out: list[float] = []
        for start in range(0, len(questions), self.batch):
            out.extend(self._batch(questions[start : start + self.batch]))
        return out

    @torch.no_grad()
    def _batch(self, questions: Sequence[str]) -> list[float]:
        texts = render_prompts(self.tokenizer, [[{"role": "user", "content": q}] for q in questions])
        rows = [self.tokenizer.encode(t, add_special_tokens=False)[-self.max_length :] for t in texts]
        width = max(len(r) for r in rows)
        pad = int(self.tokenizer.pad_token_id or 0)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # left padding: the last column is
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # every row's next token
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        device = next(self.model.parameters()).device
        with self.context():
            logits = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                logits_to_keep=1,
            ).logits[:, -1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        a, b = (torch.logsumexp(logp[:, ids_], dim=-1) for ids_ in self.ids)
        return torch.sigmoid(a - b).tolist()
