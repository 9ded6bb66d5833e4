"""vLLM generation backend (CUDA + the `gpu` extra): the same `generate(prompts, n, sampling)` call, with policy
versions served as LoRA requests on one base. Selected with `--backend vllm`, or by `auto` when it is usable.

    backend = select_backend("auto", model_path=path, pool=pool)
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence

import torch

from models.generation import Completion, Messages, SamplingParams

logger = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The asked-for generation backend cannot run here; the message says why."""


def vllm_problem() -> str | None:
    """None when vLLM can run here, else the reason it cannot."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (pip install 'rankloop[gpu]')"
    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and torch sees none"
    return None


class VLLMBackend:
    """Batched generation through `vllm.LLM.chat`; the active policy version's adapter goes in as a LoRARequest."""

    def __init__(self, model_path: str, *, max_lora_rank: int = 64, gpu_memory_utilization: float = 0.5):
        problem = vllm_problem()
        if problem:
            raise BackendUnavailable(problem)
        from vllm import LLM

        self.llm = LLM(
            model=str(model_path),
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        self.version: int = 0
        self.adapter_path: str | None = None

    def activate(self, *, version: int, adapter_path: str | None) -> None:
        self.version, self.adapter_path = version, adapter_path

    @staticmethod
    def _lora(version: int, adapter_path: str | None):
        if adapter_path is None:
            return None
        from vllm.lora.request import LoRARequest

        return LoRARequest(f"v{version}", version, str(adapter_path))

    def generate(
        self, prompts: Sequence[Messages], n: int, sampling: SamplingParams
    ) -> list[list[Completion]]:
        return self._generate(prompts, n, sampling, self._lora(self.version, self.adapter_path))

    def generate_as(
        self,
        *,
        version: int,
        adapter_path: str | None,
        prompts: Sequence[Messages],
        n: int,
        sampling: SamplingParams,
    ) -> list[list[Completion]]:
        """Generate from `version` (a LoRA request of its own); the active version is untouched."""
        return self._generate(prompts, n, sampling, self._lora(version, adapter_path))

    def _generate(
        self, prompts: Sequence[Messages], n: int, sampling: SamplingParams, lora
    ) -> list[list[Completion]]:
        from vllm import SamplingParams as VllmSampling

        params = VllmSampling(
            n=n,
            temperature=max(sampling.temperature, 0.0),
            top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )
        outputs = self.llm.chat([list(p) for p in prompts], params, lora_request=lora, use_tqdm=False)
        return [
            [
                Completion(o.text.strip(), len(o.token_ids), "eos" if o.finish_reason == "stop" else "length")
                for o in out.outputs
            ]
            for out in outputs
        ]


def select_backend(name: str, *, model_path: str, pool):
    """`transformers` (the policy pool itself), `vllm`, or `auto` (vLLM where usable, else transformers)."""
    if name == "transformers":
        return pool
    problem = vllm_problem()
    if name == "vllm" and problem:
        raise BackendUnavailable(f"--backend vllm asked for, but {problem}; use --backend transformers")
    if name == "auto" and problem:
        logger.info("generation backend: transformers (%s)", problem)
        return pool
    return VLLMBackend(model_path)
