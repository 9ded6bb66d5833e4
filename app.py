"""rankloop entry point: the `rankloop` command and its subcommands.

rankloop serve --home runs --port 7860     # start the web app on the embedded default model
rankloop prepare-model --home runs         # fetch and convert the embedded default model once
rankloop --help                            # every subcommand
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

DEFAULT_HOME = os.environ.get("RANKLOOP_HOME", "runs")


def _serve(args: argparse.Namespace) -> int:
    import gradio as gr

    from labeler.ui.playground import build_playground_tab
    from models.generation import TransformersBackend
    from models.loading import load_base

    model, tokenizer = load_base(args.model, home=Path(args.home), device=args.device)
    with gr.Blocks(title="rankloop") as demo:
        gr.Markdown("# rankloop")
        build_playground_tab(TransformersBackend(model, tokenizer))
    demo.queue().launch(server_name=args.host, server_port=args.port)
    return 0


def _prepare_model(args: argparse.Namespace) -> int:
    from models.resolve import resolve_model

    print(resolve_model(args.model, home=Path(args.home)))
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    serve.add_argument("--model", default="default", help="'default', a Hub id or a local checkpoint path")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    serve.set_defaults(func=_serve)

    prep = add("prepare-model", "resolve a model (fetch and convert the embedded default once)")
    prep.add_argument("--model", default="default")
    prep.set_defaults(func=_prepare_model)

    from labeler import cli as labeler_cli

    labeler_cli.register(add)
    from rlhf import cli as rlhf_cli

    rlhf_cli.register(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except Exception as exc:  # command-line boundary: one clear line, not a traceback
        if args.verbose:
            raise
        print(f"rankloop {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
