"""Command-line subcommands for generation and training. Registered by `app.py`.

rankloop generate --prompts data/prompts.jsonl --n 4 [--model default] [--labels-needed 2]
rankloop judge add house-style --rules rules.txt ; rankloop judge add self --model base ; rankloop judge run
rankloop versions ; rankloop switch v2 ; rankloop export-model v2 --out DIR [--merge] [--push-to-hub REPO]
rankloop export-model r3 --out DIR [--merge]      # a reward model: its adapter and head, or a merged classifier
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal

from sqlmodel import Session
from tqdm import tqdm

from labeler.io.importers import parse_prompts
from labeler.labels.judge_worth import judge_worth
from labeler.labels.judges import (
    add_judge,
    judge_waiting_sets,
    list_judges,
    set_judge_disabled,
    set_judge_template,
)
from labeler.records.model_card import model_card
from labeler.records.policies import (
    current_policy,
    gate_lines,
    make_current,
    policy_by_version,
    policy_versions,
    switched_by,
)
from labeler.records.reward_models import find_reward_model, reward_models
from labeler.store.db import default_url, make_engine, read_session
from labeler.store.store import CompletionIn, add_completion_set, add_prompts, messages_hash, prompt_ids
from models.adapters import export_adapter, export_merged
from models.generation import SamplingParams
from models.loading import load_base
from rlhf.serve.model_judges import ModelJudges
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


JUDGE_RUN_LIMIT = 100_000  # `rankloop judge run`: every waiting set


def _judge(
    *,
    home: str,
    db: str | None,
    action: str,
    name: str | None,
    rules: str | None,
    model: str | None,
    template: str | None,
) -> int:
    if action in ("add", "disable", "enable", "template") and not name:
        raise ValueError(f"judge {action}: give the judge's name")
    engine = make_engine(db or default_url(Path(home)))
    if action == "run":
        with read_session(engine) as session:  # a model judge's `base` is the current version's base
            current = current_policy(session=session)
        base = current.base_model if current is not None else "default"
        compare = ModelJudges(None, base_model=base, home=Path(home))
        written = 0
        while more := judge_waiting_sets(engine, limit=JUDGE_RUN_LIMIT, compare=compare):
            written += more  # a model judge takes a batch at a time
        print(f"judges wrote {written} rankings (abstentions included)")
        return 0
    prompt_text = Path(template).read_text(encoding="utf-8") if template else None
    with Session(engine) as session:
        if action == "add":
            _add_judge(session, str(name), rules, model, prompt_text)
        elif action == "template":
            if prompt_text is None:
                raise ValueError("judge template: give --template FILE")
            version = set_judge_template(session=session, name=str(name), template=prompt_text)
            print(f"judge {name!r} asks with comparison prompt v{version} from now on")
        elif action in ("disable", "enable"):
            set_judge_disabled(session=session, name=str(name), disabled=action == "disable")
            print(f"{action}d judge {name!r}")
        else:
            _print_judges(session)
    return 0


def _add_judge(
    session: Session, name: str, rules: str | None, model: str | None, template: str | None
) -> None:
    if bool(rules) == bool(model):
        raise ValueError(
            "judge add: give --rules FILE (a rule judge) or --model NAME (a model judge), one of them"
        )
    if rules:
        text = Path(rules).read_text(encoding="utf-8")
        add_judge(session=session, name=name, kind="rules", config={"rules": text}, created_by="cli")
        print(f"added rule judge {name!r}")
    else:
        config = {"model": model, "template": template}
        add_judge(session=session, name=name, kind="model", config=config, created_by="cli")
        print(f"added model judge {name!r} ({model})")


def _print_judges(session: Session) -> None:
    worth = judge_worth(session=session)
    for row in list_judges(session=session):
        state = "disabled" if row.disabled else "enabled"
        agreement = "-" if row.agreement is None else f"{row.agreement:.0%} of {row.compared} pairs"
        mine = worth.get(row.user_id)
        saved = "-" if mine is None else f"{mine.saved:.0f} (accuracy {mine.accuracy:.0%}, people {mine.people_accuracy:.0%})"  # fmt: skip
        print(
            f"{row.name} ({row.kind}, {state}): ranked {row.ranked}, abstained {row.abstained}, "
            f"agreement with people {agreement}, human rankings saved (estimate) {saved}"
        )
        if row.kind == "model":
            print(f"  asks {row.model} with comparison prompt v{row.template_version}:")
            print("".join(f"    {line}\n" for line in str(row.template).splitlines()), end="")
        print("".join(f"  - {check}\n" for check in row.checks), end="")


def version_number(text: str) -> int:
    """`v3` or `3` as 3; ValueError saying how to name a version."""
    digits = text[1:] if text.lower().startswith("v") else text
    if not digits.isdigit():
        raise ValueError(f"{text!r} is not a version: name one as v3 (see `rankloop versions`)")
    return int(digits)


def _versions(*, home: str, db: str | None) -> int:
    with read_session(make_engine(db or default_url(Path(home)))) as session:
        rows = policy_versions(session=session)
        parents = {pv.id: pv.version for pv in rows}
        for pv in rows:
            kl = "-" if pv.kl is None else f"{pv.kl:.2f}"
            accuracy = "-" if pv.heldout_accuracy is None else f"{pv.heldout_accuracy:.3f}"
            parent = f"v{parents[pv.parent_id]}" if pv.parent_id in parents else "-"
            print(
                f"v{pv.version}{' (current)' if pv.is_current else ''}: parent {parent}, gate "
                f"{pv.gate_decision or '-'}, KL {kl}, held-out accuracy {accuracy}, made current by hand "
                f"{', '.join(switched_by(pv)) or '-'}"
            )
            print("".join(f"  {line}\n" for line in gate_lines(pv)), end="")
    return 0


def _switch(*, home: str, db: str | None, version: str) -> int:
    with Session(make_engine(db or default_url(Path(home)))) as session:
        row = make_current(session=session, version=version_number(version), by="cli")
    print(f"v{row.version} is now current (its gate said: {row.gate_decision or 'no gate'})")
    return 0


def _export_model(
    *, home: str, db: str | None, version: str, out: str, merge: bool, device: str, push_to_hub: str | None
) -> int:
    if version.lower().startswith("r"):
        folder = _export_reward(
            home=home, db=db, name=version.lower(), out=Path(out), merge=merge, device=device
        )
    else:
        folder = _export_policy(home=home, db=db, version=version, out=Path(out), merge=merge, device=device)
    print(f"exported {version} ({'merged' if merge else 'adapter'}) to {folder}")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(push_to_hub, exist_ok=True)
        api.upload_folder(repo_id=push_to_hub, folder_path=str(folder))
        print(f"pushed to https://huggingface.co/{push_to_hub}")
    return 0


def _export_policy(*, home: str, db: str | None, version: str, out: Path, merge: bool, device: str) -> Path:
    number = version_number(version)
    with read_session(make_engine(db or default_url(Path(home)))) as session:
        card = model_card(session=session, version=number, merged=merge)  # ValueError for an unknown version
        target = policy_by_version(session=session, version=number)
    assert target is not None
    if target.adapter_path is None and not merge:
        raise ValueError(f"v{number} is the base itself, with no adapter: export it with --merge")
    base, tokenizer = load_base(target.base_model, home=Path(home), device=device)
    if merge:
        export_merged(base, target.adapter_path, tokenizer, out)
    else:
        export_adapter(str(target.adapter_path), tokenizer, out)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


def _export_reward(*, home: str, db: str | None, name: str, out: Path, merge: bool, device: str) -> Path:
    from rlhf.train.reward_export import export_reward_adapter, export_reward_merged, reward_card

    with read_session(make_engine(db or default_url(Path(home)))) as session:
        found = find_reward_model(session=session, name=name)
        known = [r.name for r in reward_models(session=session)]
    if found is None or found.adapter_path is None:
        raise ValueError(
            f"no reward model {name!r} with saved weights (reward models: {', '.join(known) or 'none'})"
        )
    base, tokenizer = load_base(found.base_model, home=Path(home), device=device)
    folder = Path(found.adapter_path)
    offset = export_reward_merged(base, folder, tokenizer, out) if merge else None
    if not merge:
        export_reward_adapter(folder, tokenizer, out)
    card = reward_card(found.name, found.base_model, asdict(found.facts), merge, offset)
    (out / "README.md").write_text(card, encoding="utf-8")
    return out


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

    judge = add("judge", "programs that rank sets beside labelers: rule judges and model judges")
    judge.add_argument("action", choices=["add", "list", "disable", "enable", "template", "run"])
    judge.add_argument("name", nargs="?")
    judge.add_argument(
        "--rules",
        metavar="FILE",
        help="add a rule judge: its checks, one a line: 'must match: REGEX', 'must not match: REGEX', 'fewer "
        "than N words', 'at least N words', 'starts with: TEXT', 'ends with: TEXT', 'all lowercase', 'all "
        "capitals', 'instructions' (the prompt's verifiable instructions)",
    )
    judge.add_argument(
        "--model",
        metavar="NAME",
        help="add a model judge: 'base' (the policy's base, adapters off), a local path or a Hub id",
    )
    judge.add_argument(
        "--template",
        metavar="FILE",
        help="a model judge's comparison prompt ({principles} {prompt} {first} {second}); default: "
        "docs/constitution.md's. With `template NAME`: its next version",
    )
    judge.set_defaults(func=_judge)

    add("versions", "every policy version: parent, gate verdict, KL, who made it current").set_defaults(
        func=_versions
    )
    switch = add("switch", "make a version current (a candidate the gate refused too; recorded as by hand)")
    switch.add_argument("version", help="v3, or 3")
    switch.set_defaults(func=_switch)
    exp = add(
        "export-model",
        "take a version or a reward model away: its adapter, or a merged transformers folder, with a card",
    )
    exp.add_argument("version", help="a policy version (v3, or 3) or a reward model (r2)")
    exp.add_argument("--out", required=True, help="folder to write")
    exp.add_argument(
        "--merge", action="store_true", help="merge the adapter into the base: no peft to load it"
    )
    exp.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to merge")
    exp.add_argument(
        "--push-to-hub", metavar="REPO_ID", help="also upload the folder to the Hugging Face Hub"
    )
    exp.set_defaults(func=_export_model)
