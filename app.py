"""rankloop entry point: the `rankloop` command and its subcommands.

rankloop serve --home runs --port 7860     # start the web app on the embedded default model
rankloop prepare-model --home runs         # fetch and convert the embedded default model once
rankloop --help                            # every subcommand
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # types only: `rankloop --help` imports nothing heavy
    from rlhf.serve.monitor import BackgroundMonitor

DEFAULT_HOME = os.environ.get("RANKLOOP_HOME", "runs")


LOOPBACK = ("127.0.0.1", "localhost", "::1")
BUILTIN_PROMPTS = Path(__file__).resolve().parent / "data" / "prompts.jsonl"


def _bootstrap_store(engine, args: argparse.Namespace) -> None:
    """First start: an admin account (password printed once), policy v0, the built-in prompts.

    Replicas starting together on one empty store may race here; the loser's insert hits a unique constraint,
    and its second pass finds everything in place."""
    from sqlalchemy.exc import IntegrityError

    try:
        _bootstrap_once(engine, args)
    except IntegrityError:
        _bootstrap_once(engine, args)


def _bootstrap_once(engine, args: argparse.Namespace) -> None:
    from sqlmodel import Session

    from labeler.io.importers import parse_prompts
    from labeler.records.policies import ensure_initial_policy
    from labeler.store.db import read_session
    from labeler.store.store import add_prompts, has_prompts
    from labeler.store.users import ensure_admin, has_users

    with read_session(engine) as session:
        any_users, any_prompts = has_users(session=session), has_prompts(session=session)
    if args.host not in LOOPBACK and not any_users:
        raise SystemExit(
            f"refusing to bind {args.host} with no accounts: create one first with "
            "`rankloop user add NAME --role admin`"
        )
    conversations = [] if any_prompts or not BUILTIN_PROMPTS.exists() else parse_prompts(BUILTIN_PROMPTS)
    with Session(engine) as session:
        password = ensure_admin(session=session)
        if password:
            print(
                f"\n  rankloop: created admin account 'admin' with password: {password}\n  (shown once)\n",
                flush=True,
            )
        ensure_initial_policy(session=session, base_model=args.model)
        if conversations:
            add_prompts(
                session=session, conversations=conversations, source=BUILTIN_PROMPTS.name, eval_fraction=0.1
            )


def _generator_argv(args: argparse.Namespace, url: str) -> list[str]:
    """The serve options the pre-generation process needs, as its command line."""
    argv = ["--home", str(args.home), "--db", url, "--n", str(args.n), "--model", args.model]
    argv += ["--max-new-tokens", str(args.max_new_tokens), "--temperature", str(args.temperature)]
    argv += [
        "--device",
        args.device,
        "--backend",
        args.backend,
        "--lease-seconds",
        str(args.worker_lease_seconds),
    ]
    if args.buffer is not None:
        argv += ["--buffer", str(args.buffer)]
    return argv + (["--load-in-4bit"] if args.load_in_4bit else [])


class Background(Protocol):
    """What the server starts next to itself and stops when it stops."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


def _start_generator(args: argparse.Namespace, url: str, engine, pool) -> Background | None:
    """Pre-generation as an idle-priority process (default), a thread in this process, or not at all."""
    generator: Background
    if args.generator == "off":
        return None
    if args.generator == "process":
        from rlhf.serve.pregen_process import GeneratorProcess

        generator = GeneratorProcess(_generator_argv(args, url), Path(args.home) / "logs" / "generator.log")
    else:
        from models.generation import SamplingParams
        from rlhf.serve.pregen import PregenConfig, PregenWorker
        from rlhf.serve.serving import ModelOptions, generation_backend

        sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
        generator = PregenWorker(
            engine=engine,
            pool=generation_backend(ModelOptions.of(vars(args)), engine, pool),
            config=PregenConfig(
                buffer=args.buffer, n=args.n, sampling=sampling, lease_seconds=args.worker_lease_seconds
            ),
        )
    generator.start()
    return generator


def _serve(args: argparse.Namespace) -> int:
    from labeler.api.app import rest_app
    from labeler.store.db import default_url, make_engine
    from labeler.ui.app import build_ui, launch
    from labeler.ui.deps import UIDeps
    from rlhf.serve.jobs import JobRunner, Launcher
    from rlhf.serve.serving import ModelOptions, load_pool
    from rlhf.serve.webhooks import Dispatcher

    home = Path(args.home)
    url = args.db or default_url(home)
    engine = make_engine(url)
    _bootstrap_store(engine, args)
    # the admin tab's side-by-side samples (and the generator in thread mode)
    pool = load_pool(ModelOptions.of(vars(args)), engine)
    generator = _start_generator(args, url, engine, pool)
    if (args.processes or args.accelerate_config) and args.launcher != "accelerate":
        raise SystemExit("--processes and --accelerate-config need --launcher accelerate")
    launcher = Launcher(args.launcher, args.processes, args.accelerate_config)
    runner = JobRunner(engine=engine, db_url=url, home=home, launcher=launcher)
    runner.watch()
    monitor = _start_monitor(engine, generator, runner)
    hooks = Dispatcher(engine)
    hooks.start()
    deps = UIDeps(
        engine=engine,
        home=home,
        pool=pool,
        runner=runner,
        monitor=monitor,
        completions_per_set=args.n,
        figures_at_start=True,
    )
    try:
        launch(build_ui(deps), deps, host=args.host, port=args.port, api=rest_app(engine, runner))
    finally:
        hooks.stop()
        if generator is not None:
            generator.stop()
        runner.stop()
        monitor.stop()
    return 0


def _start_monitor(engine, generator: Background | None, runner) -> BackgroundMonitor:
    """Watch the generator process and the running jobs: CPU share, rate, starvation (rlhf/serve/monitor.py)."""
    from labeler.labels.stats import generated_sets
    from labeler.store.db import read_session
    from rlhf.serve.monitor import BackgroundMonitor
    from rlhf.serve.pregen_process import GeneratorProcess

    def sets_written() -> float:
        with read_session(engine) as session:
            return float(generated_sets(session=session))

    def generator_sources() -> list:
        return generator.sources(sets_written) if isinstance(generator, GeneratorProcess) else []

    monitor = BackgroundMonitor([generator_sources, runner.job_sources])
    monitor.start()
    return monitor


def _prepare_model(args: argparse.Namespace) -> int:
    from models.resolve import resolve_model

    print(resolve_model(args.model, home=Path(args.home)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from rlhf.serve.serving import add_model_args
    from rlhf.train.configs import ANSWER_TOKENS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=DEFAULT_HOME, help="home folder: database, models, exports, caches")
    common.add_argument(
        "--db", help="database URL (default: sqlite:///HOME/rankloop.db; postgresql+psycopg://... works)"
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser = argparse.ArgumentParser(prog="rankloop", description="Human-feedback labeling and RLHF.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, parents=[common], description=help_text)

    serve = add("serve", "start the web app")
    serve.add_argument(
        "--host", default="127.0.0.1", help="bind address; a non-loopback one needs existing accounts"
    )
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--n", type=int, default=4, help="completions per set")
    serve.add_argument(
        "--buffer", type=int, default=None, help="sets kept ready (default: 2 per active labeler, min 4)"
    )
    serve.add_argument(
        "--max-new-tokens", type=int, default=ANSWER_TOKENS, help="answer length cap of the generator"
    )
    serve.add_argument("--temperature", type=float, default=0.8)
    serve.add_argument(
        "--launcher", choices=["python", "accelerate"], default="python", help="how training jobs start"
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=None,
        help="with --launcher accelerate: data-parallel processes per job (GPUs, or CPU processes without)",
    )
    serve.add_argument(
        "--accelerate-config",
        default=None,
        help="with --launcher accelerate: its config file (DeepSpeed, ...)",
    )
    serve.add_argument(
        "--generator",
        choices=["process", "thread", "off"],
        default="process",
        help="pre-generation: its own low-priority process (default), a thread of the server, or off",
    )
    serve.add_argument(
        "--worker-lease-seconds",
        type=float,
        default=30.0,
        help="replicas on one store: the generating one renews a lease this long; another takes over after it",
    )
    add_model_args(serve)
    serve.set_defaults(func=_serve)

    prep = add("prepare-model", "resolve a model (fetch and convert the embedded default once)")
    prep.add_argument("--model", default="default")
    prep.set_defaults(func=_prepare_model)

    from labeler import cli as labeler_cli

    labeler_cli.register(add)
    from rlhf import cli as rlhf_cli

    rlhf_cli.register(add)
    return parser


def dispatch(handler: Callable[..., int], args: argparse.Namespace) -> int:
    """Run a subcommand. This module's own handlers take the Namespace; those of labeler/ and rlhf/ take the
    flags their signature names as keyword arguments, so no Namespace goes below app.py."""
    if handler.__module__ == __name__:
        return handler(args)
    flags = vars(args)
    return handler(**{name: flags[name] for name in inspect.signature(handler).parameters})


def main(argv: list[str] | None = None) -> int:
    from rlhf.cli import run_stage_command

    argv = sys.argv[1:] if argv is None else argv
    if run_stage_command(argv):
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return dispatch(args.func, args)
    except Exception as exc:  # command-line boundary: one clear line, not a traceback
        if args.verbose:
            raise
        print(f"rankloop {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
