"""SFT on the best answers: the current policy's LoRA fine-tuned on labelers' edits and the answers every labeler
of their set ranked first (labeler/labels/dataset.py's `best_answers`, what the export's sft file holds), and on an
SFT file if given; saved and registered as version K+1. Preferences only reweight what the policy already writes;
an edit shows it what it never wrote (a lowercase answer, the phrase it must end with).

    rankloop sft [--data runs/exports/latest/sft.jsonl] [--epochs 2] [--make-current]
    (or: python -m rlhf.train.sft --home runs)

The loss is each answer's mean per-token negative log-likelihood given its prompt in the chat template. A
quarter of the prompts (the reward model's and DPO's hashed split) is held out; their answers' NLL before and
after training is the stage's evaluation (`heldout_nll_before`, `heldout_nll_after`): a version whose held-out
NLL did not fall learned nothing that carries over.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from peft import LoraConfig, PeftModel, get_peft_model

from labeler.labels.dataset import best_answers
from labeler.store.db import default_url, make_engine, read_session
from labeler.store.store import messages_hash
from models.adapters import LORA_TARGETS
from models.generation import render_prompts
from models.loading import load_base, step_autocast
from models.logprobs import Row, answer_distributions, fit_row, per_row, written
from rlhf.train.configs import SFTConfig
from rlhf.train.policy_stage import read_inputs, samples, save_adapter_version
from rlhf.train.progress import ConsoleReporter, Reporter
from rlhf.train.reward_data import is_heldout
from rlhf.train.scoring import fit_history, render_dialogue

EVAL_BATCH = 8  # held-out answers per forward pass (no gradients)


class NothingToLearn(ValueError):
    """No best answer in the store and no SFT file."""


class SFTDataError(ValueError):
    """An SFT file that cannot be read: the message names the file, the line and the field."""


@dataclass(frozen=True)
class Example:
    prompt: list[dict]  # the conversation up to the answer
    completion: str  # the answer to learn
    source: str  # `edit`, `ranked first by all`, or the file it came from


def _messages(value: Any, where: str, field: str) -> list[dict]:
    """A prompt as messages: a string is one user turn; a list must be {role, content} messages."""
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise SFTDataError(
        f"{where}: field {field!r} must be a non-empty string or a list of {{role, content}} messages"
    )


def _completion(value: Any, where: str) -> str:
    """A completion as text: a string, or TRL's one assistant message in a list."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        if value[0].get("role") != "assistant":
            raise SFTDataError(f"{where}: field 'completion' must be the assistant's turn")
        value = value[0].get("content")
    if not isinstance(value, str) or not value.strip():
        raise SFTDataError(f"{where}: field 'completion' must be a non-empty string or one assistant message")
    return value


def read_sft_file(path: Path) -> list[Example]:
    """The examples of a JSONL SFT file ({prompt, completion} a line); SFTDataError names file, line and field
    and nothing is trained on when any line is bad."""
    if not path.is_file():
        raise SFTDataError(f"{path}: no such file")
    examples = []
    with path.open(encoding="utf-8-sig") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SFTDataError(f"{where}: not JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise SFTDataError(f"{where}: a line must be a JSON object with 'prompt' and 'completion'")
            for name in ("prompt", "completion"):
                if name not in record:
                    raise SFTDataError(f"{where}: field {name!r} is missing")
            prompt = _messages(record["prompt"], where, "prompt")
            examples.append(Example(prompt, _completion(record["completion"], where), path.name))
    if not examples:
        raise SFTDataError(f"{path}: no examples")
    return examples


def read_examples(engine, config: SFTConfig) -> list[Example]:
    """The store's best answers (one short read) and the SFT file's examples."""
    examples: list[Example] = []
    if config.store:
        with read_session(engine) as session:
            examples += [Example(a.prompt, a.completion, a.why) for a in best_answers(session=session)]
    if config.data:
        examples += read_sft_file(Path(config.data))
    if not examples:
        raise NothingToLearn(
            "no best answers to train on yet: rank sets (answers every labeler ranks first count), edit answers on "
            "the labeling page, or give an SFT file with --data"
        )
    return examples


def split_examples(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """Train and held-out examples by prompt (the same hashed split as the reward model's and DPO's)."""
    heldout = [e for e in examples if is_heldout(messages_hash(e.prompt), fraction)]
    train = [e for e in examples if not is_heldout(messages_hash(e.prompt), fraction)]
    if not train:
        raise ValueError(f"eval_fraction={fraction:g} holds out every prompt: add examples or lower it")
    return train, heldout


def example_row(example: Example, tokenizer, max_length: int) -> Row:
    """(prompt ids, answer ids): the answer in the chat template up to its end-of-turn token."""
    history = fit_history(tokenizer, example.prompt, [example.completion], max_length)
    prompt = tokenizer(render_prompts(tokenizer, [history])[0], add_special_tokens=False)["input_ids"]
    full = tokenizer(render_dialogue(tokenizer, history, example.completion), add_special_tokens=False)
    return fit_row(prompt, full["input_ids"][len(prompt) :], max_length)


def mean_nll(model, rows: list[Row], pad: int) -> torch.Tensor:
    """Each row's mean per-token negative log-likelihood of its answer ([rows])."""
    logprobs, targets, row = answer_distributions(model, rows, pad_id=pad)
    lengths = torch.tensor([max(1, len(a)) for _, a in rows], device=logprobs.device, dtype=logprobs.dtype)
    return -per_row(written(logprobs, targets), row, len(rows)) / lengths


def heldout_nll(model, tokenizer, examples: list[Example], max_length: int) -> float | None:
    """The held-out answers' mean per-token NLL (None without held-out answers)."""
    if not examples:
        return None
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    values = []
    with torch.no_grad():
        for start in range(0, len(examples), EVAL_BATCH):
            rows = [example_row(e, tokenizer, max_length) for e in examples[start : start + EVAL_BATCH]]
            values.append(mean_nll(model, rows, pad).float())
    return torch.cat(values).mean().item()


def train_sft(
    model: PeftModel, tokenizer, examples: list[Example], config: SFTConfig, reporter: Reporter
) -> dict:
    """Steps of `config.batch_size` answers (global over processes) in `mixed_precision`'s autocast; returns the
    mean loss and the last step's."""
    accelerator = Accelerator(cpu=config.device == "cpu")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    rank, world = accelerator.process_index, accelerator.num_processes
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} does not split evenly over {world} processes")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rng = random.Random(config.seed)
    batches = -(-len(examples) // config.batch_size)
    reporter.start(config.epochs * batches, "sft")
    wrapped.train()
    losses: list[float] = []
    for _ in range(config.epochs):
        order = examples[:]
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            mine = (
                batch[rank::world] or batch[:1]
            )  # every process takes a step, so none waits in the all-reduce
            rows = [example_row(e, tokenizer, config.max_length) for e in mine]
            with step_autocast(config.mixed_precision, config.device, accelerator.device):
                loss = mean_nll(wrapped, rows, pad).mean()
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            figures = {"step": len(losses), "loss": losses[-1]}
            reporter.step(figures)
            reporter.log(figures)
    wrapped.eval()
    return {"loss": sum(losses) / max(1, len(losses)), "last_loss": losses[-1] if losses else float("nan")}


@dataclass
class SFTResult:
    name: str
    path: Path
    version: int
    metrics: dict
    seconds: float
    train_answers: int = 0


def trainable(config: SFTConfig, base, adapter_path: str | None) -> PeftModel:
    """The parent's adapter to continue (`start_from=parent`), else a fresh LoRA adapter on the base."""
    torch.manual_seed(config.seed)
    if adapter_path and config.start_from == "parent":
        return PeftModel.from_pretrained(base, adapter_path, is_trainable=True)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=LORA_TARGETS)
    return get_peft_model(base, lora)


def run(config: SFTConfig, *, reporter: Reporter | None = None, job_id: int | None = None) -> SFTResult:
    reporter = reporter or ConsoleReporter()
    start = time.perf_counter()
    engine = make_engine(config.db or default_url(Path(config.home)))
    inputs = read_inputs(engine, sample_count=config.sample_prompts, need_reward=False)
    train, heldout = split_examples(read_examples(engine, config), config.eval_fraction)
    base, tokenizer = load_base(inputs.parent.base_model, home=Path(config.home), device=config.device)
    model = trainable(config, base, inputs.parent.adapter_path)
    before = heldout_nll(model, tokenizer, heldout, config.max_length)
    final = train_sft(model, tokenizer, train, config, reporter)
    after = heldout_nll(model, tokenizer, heldout, config.max_length)
    final = {
        **final,
        "heldout_nll_before": before,
        "heldout_nll_after": after,
        "heldout_answers": len(heldout),
    }
    if heldout:  # the job's evaluation line (labeler/ui/job_view.py)
        reporter.log(
            {"heldout_answers": len(heldout), "heldout_nll_before": before, "heldout_nll_after": after}
        )
    metrics = {
        "final": final,
        "samples_after": samples(model, tokenizer, inputs.prompts.samples, config.max_new_tokens),
        "config": asdict(config),
        "optimizer": "sft",
        "sft": {"answers": len(train), "by_source": dict(Counter(e.source for e in train))},
    }
    version, folder = save_adapter_version(
        engine,
        inputs,
        model,
        home=Path(config.home),
        metrics=metrics,
        make_current=config.make_current,
        job_id=job_id,
    )
    reporter.close()
    return SFTResult(f"v{version}", folder, version, final, time.perf_counter() - start, len(train))


def main(argv: list[str] | None = None) -> None:
    from rlhf.train.stage import run_stage

    run_stage(SFTConfig, run, argv, kind="sft")


if __name__ == "__main__":
    main()
