"""Policy versions on one base: v0 is the bare base; vK is the base plus LoRA adapter `vK`. Adapters are
loaded once and swapped by name; the base weights are never reloaded or copied.

    pool = PolicyPool(base_model, tokenizer)
    pool.activate(version=3, adapter_path="runs/models/policy-v3")
    sets = pool.generate(prompts, n=4, sampling=SamplingParams())
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import cast

from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from models.generation import Completion, Messages, SamplingParams, TransformersBackend

logger = logging.getLogger(__name__)


class PolicyPool:
    """One base model, any number of named LoRA adapters, one of them (or none) active for generation."""

    def __init__(
        self, base: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, token_budget: int = 32768
    ):
        self.model: PreTrainedModel | PeftModel = base
        self.tokenizer = tokenizer
        self.token_budget = token_budget
        self.active: str | None = None  # None: the bare base (v0)
        self.version: int = 0
        # One lock for activate + generate: the pre-generation thread and the admin tab share the pool.
        self.lock = threading.RLock()
        self._adapter_paths: dict[str, str] = {}

    @staticmethod
    def adapter_name(version: int) -> str:
        return f"v{version}"

    @property
    def loaded_adapters(self) -> list[str]:
        return list(self.model.peft_config) if isinstance(self.model, PeftModel) else []

    def activate(self, *, version: int, adapter_path: str | None) -> None:
        """Make `version` the one that generates; loads its adapter the first time it is asked for."""
        with self.lock:
            self._activate(version, adapter_path)

    def _activate(self, version: int, adapter_path: str | None) -> None:
        if adapter_path is None:
            self.active, self.version = None, version
            return
        name = self.adapter_name(version)
        self.load_adapter(name, adapter_path)
        self._adapter_paths[name] = adapter_path
        cast(PeftModel, self.model).set_adapter(name)
        self.active, self.version = name, version

    def load_adapter(self, name: str, path: str) -> PeftModel:
        """Load one more named adapter (a reward model's, for scoring) on the base, once; returns the model."""
        with self.lock:
            if name not in self.loaded_adapters:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(path, adapter_name=name, is_trainable=False)
                else:
                    self.model = PeftModel.from_pretrained(
                        self.model, path, adapter_name=name, is_trainable=False
                    )
                self.model.eval()
                logger.info("loaded adapter %s from %s", name, path)
            assert isinstance(self.model, PeftModel)
            return self.model

    @contextlib.contextmanager
    def using_adapter(self, name: str) -> Iterator[None]:
        """Run with adapter `name` active (loaded by `load_adapter`), then give the active version back."""
        with self.lock:
            assert isinstance(self.model, PeftModel), "load_adapter first"
            self.model.set_adapter(name)
            try:
                yield
            finally:
                if self.active is not None:
                    self.model.set_adapter(self.active)

    def _adapter_context(self) -> contextlib.AbstractContextManager:
        return self.base_context() if self.active is None else contextlib.nullcontext()

    def generate(
        self, prompts: Sequence[Messages], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        """N completions per prompt from the active version."""
        with self.lock:
            backend = TransformersBackend(self.model, self.tokenizer, token_budget=self.token_budget)
            with self._adapter_context():
                return backend.generate(prompts, n, sampling)

    def generate_as(
        self,
        *,
        version: int,
        adapter_path: str | None,
        prompts: Sequence[Messages],
        n: int,
        sampling: SamplingParams,
    ) -> list[list[Completion]]:
        """Generate from `version` (loading its adapter if needed), then give the active version back.

        For side-by-side samples and human-evaluation sets that mix the current version with its parent; the
        lock is held throughout, so the pre-generation thread never generates with the wrong adapter."""
        with self.as_version(version=version, adapter_path=adapter_path):
            return self.generate(prompts, n, sampling)

    @contextlib.contextmanager
    def as_version(self, *, version: int, adapter_path: str | None) -> Iterator[None]:
        """Hold the lock with `version` active (its adapter loaded if needed), then give the active one back."""
        with self.lock:
            previous = (self.version, self._adapter_paths.get(self.active) if self.active else None)
            self._activate(version, adapter_path)
            try:
                yield
            finally:
                self._activate(*previous)

    def base_context(self) -> contextlib.AbstractContextManager:
        """Run the bare base (v0) whatever is active: the adapters off."""
        if isinstance(self.model, PeftModel):
            return self.model.disable_adapter()
        return contextlib.nullcontext()
