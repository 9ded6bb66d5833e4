"""The models that model judges ask (labeler/labels/model_judge.py says what they are asked). `base` is the
policy's base with every adapter off, borrowed from the generator's PolicyPool under its lock; any other name (a
local path or a Hub id), and `base` where there is no pool (`rankloop judge run`), is loaded once and kept.

    compare = ModelJudges(pool)                       # the pre-generation worker's
    judge_waiting_sets(engine, compare=compare)
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from labeler.labels.judges import BASE
from models.loading import load_base
from models.pairwise import PairwiseModel
from models.policy import PolicyPool

logger = logging.getLogger(__name__)


class ModelJudges:
    """`compare(model, questions)`: P(the first answer is better) for every question, from judge model `model`."""

    def __init__(
        self,
        pool: PolicyPool | None,
        *,
        base_model: str = "default",
        home: Path = Path("runs"),
        device: str = "cpu",
    ):
        self.pool, self.base_model, self.home, self.device = pool, base_model, home, device
        self._loaded: dict[str, PairwiseModel] = {}

    def __call__(self, model: str, questions: list[str]) -> list[float]:
        return self._judge(model).prefer_first(questions)

    def _judge(self, model: str) -> PairwiseModel:
        if model == BASE and self.pool is not None:
            pool = self.pool
            return PairwiseModel(pool.model, pool.tokenizer, context=lambda: _bare_base(pool))
        if model not in self._loaded:
            name = self.base_model if model == BASE else model  # no pool to borrow it from: loaded
            loaded, tokenizer = load_base(name, home=self.home, device=self.device)
            self._loaded[model] = PairwiseModel(loaded, tokenizer)
            logger.info("model judge: loaded %s", name)
        return self._loaded[model]


@contextlib.contextmanager
def _bare_base(pool: PolicyPool) -> Iterator[None]:
    with pool.lock, pool.base_context():
        yield
