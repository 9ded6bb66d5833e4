"""Command-line subcommands for generation and training. Registered by `app.py`.

rankloop generate --prompts data/prompts.jsonl --n 4 [--model default] [--labels-needed 2]
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from sqlmodel import Session
from tqdm import tqdm

from labeler.io.importers import parse_prompts
from labeler.store.db import default_url, make_engine, read_session
from labeler.store.store import CompletionIn, add_completion_set, add_prompts, messages_hash, prompt_ids
from models.generation import SamplingParams
from rlhf.serve.serving import ModelOptions, add_model_args, current_ref, generation_backend, load_pool
from rlhf.train.configs import STAGES

# Handlers take the parsed flags they need as keyword arguments (app.py passes them by name), never argparse's
# Namespace, so the type checker sees every flag a handler reads.


def _generate(
    *,
    home: str,
    db: str | None,
    prompts: str,
    n: int,
    labels_needed: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    batch: int,
    model: str,
    device: Literal["auto", "cpu", "cuda"],
    backend: Literal["auto", "transformers", "vllm"],
    load_in_4bit: bool,
) -> int:
    conversations = parse_prompts(Path(prompts))
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    engine = make_engine(db or default_url(Path(home)))
    with Session(engine) as session:
        add_prompts(session=session, conversations=conversations, source=Path(prompts).name)
    with read_session(engine) as session:
        ids = prompt_ids(session=session, conversations=conversations)
    options = ModelOptions(model=model, home=home, device=device, backend=backend, load_in_4bit=load_in_4bit)
    pool = generation_backend(options, engine, load_pool(options, engine))
    policy = current_ref(engine, model)
    written = 0
    for start in tqdm(range(0, len(conversations), batch), desc=f"generate v{policy.version}", unit="batch"):
        chunk = conversations[start : start + batch]
        sets = pool.generate(chunk, n, sampling)  # no transaction is open while the model works
        with Session(engine) as session:
            for conv, completions in zip(chunk, sets, strict=True):
                add_completion_set(
                    session=session,
                    prompt_id=ids[messages_hash(conv)],
                    completions=[CompletionIn(c.text, c.token_count, c.finish_reason) for c in completions],
                    policy_version_id=policy.id,
                    sampling=sampling.to_dict(),
                    labels_needed=labels_needed,
                    commit=False,
                )
            session.commit()
        written += len(chunk)
    print(f"wrote {written} completion sets of {n} from policy v{policy.version}")
    return 0


# Training stages parse their own config dataclass (flags or --config YAML), so `rankloop NAME ...` hands the
# rest of the command line to `python -m MODULE` unchanged (the stages: rlhf/train/configs.py).


def run_stage_command(argv: list[str]) -> bool:
    """Dispatch `rankloop STAGE ...`; False when argv does not name a stage."""
    if not argv or argv[0] not in STAGES:
        return False
    import importlib

    importlib.import_module(STAGES[argv[0]].module).main(argv[1:])
    return True


def register(add) -> None:
    for name, stage in STAGES.items():
        add(name, stage.help)  # listed in --help; `run_stage_command` handles the call

    gen = add("generate", "generate completion sets from the current policy into the store (headless)")
    gen.add_argument(
        "--prompts", required=True, help="prompt file (JSONL, CSV, TXT, Parquet or datasets folder)"
    )
    gen.add_argument("--n", type=int, default=4, help="completions per prompt")
    gen.add_argument("--labels-needed", type=int, default=1, help="labelers per set (overlap k)")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--temperature", type=float, default=0.8)
    gen.add_argument("--top-p", type=float, default=0.95)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--batch", type=int, default=8, help="prompts per generate call")
    add_model_args(gen)
    gen.set_defaults(func=_generate)
