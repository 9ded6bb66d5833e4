"""The models a running app or worker generates with: the base model with the store's current policy version
active (`PolicyPool`), and the backend that writes completion sets (the pool itself, or vLLM), from typed
options that the command line fills (`ModelOptions.of(vars(args))`).

    options = ModelOptions(model="default", home="runs")
    pool = load_pool(options, engine)
    backend = generation_backend(options, engine, pool)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session

from labeler.records.policies import PolicyRef, ensure_initial_policy
from models.loading import load_base
from models.policy import PolicyPool
from models.resolve import resolve_model
from models.vllm_backend import VLLMBackend, select_backend


@dataclass(frozen=True)
class ModelOptions:
    """Which base model serves generation, where and how (the `--model`, `--device`, `--backend` and
    `--load-in-4bit` flags of `rankloop serve`, `generate` and `pregen`)."""

    model: str = "default"  # base model for v0: 'default', a Hub id or a local path
    home: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    load_in_4bit: bool = False

    @classmethod
    def of(cls, flags: Mapping[str, Any]) -> ModelOptions:
        """The options from parsed command-line flags by name (`vars(args)`)."""
        return cls(
            model=flags["model"],
            home=str(flags["home"]),
            device=flags["device"],
            backend=flags["backend"],
            load_in_4bit=flags["load_in_4bit"],
        )


def current_ref(engine: Engine, base_model: str) -> PolicyRef:
    """The store's current version (v0 on an empty store), read in one short transaction."""
    with Session(engine) as session:
        return PolicyRef.of(ensure_initial_policy(session=session, base_model=base_model))


def load_pool(options: ModelOptions, engine: Engine) -> PolicyPool:
    """The base model with the store's current policy version active (loaded after the session closed)."""
    policy = current_ref(engine, options.model)
    model, tokenizer = load_base(
        policy.base_model, home=Path(options.home), device=options.device, load_in_4bit=options.load_in_4bit
    )
    pool = PolicyPool(model, tokenizer)
    pool.activate(version=policy.version, adapter_path=policy.adapter_path)
    return pool


def generation_backend(options: ModelOptions, engine: Engine, pool: PolicyPool) -> PolicyPool | VLLMBackend:
    """The backend that writes completion sets: the pool itself, or vLLM (`--backend`)."""
    policy = current_ref(engine, options.model)
    backend = select_backend(
        options.backend, model_path=str(resolve_model(policy.base_model, home=Path(options.home))), pool=pool
    )
    backend.activate(version=policy.version, adapter_path=policy.adapter_path)
    return backend


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags that pick the model a command generates with (`ModelOptions`' fields)."""
    parser.add_argument(
        "--model", default="default", help="base model for v0: 'default', a Hub id or a local path"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "transformers", "vllm"], help="generation backend"
    )
    parser.add_argument(
        "--load-in-4bit", action="store_true", help="4-bit base via bitsandbytes (CUDA + the gpu extra)"
    )
