"""The house's floors, checked by reading every module's source (ast, lazy imports inside functions included):

    models/  (torch, no project imports)  <-  labeler/  (store and label logic, torch-free)
        <-  rlhf/  (training stages, job runner, pre-generation)  <-  labeler/ui/  (the Gradio app)  <-  app.py

A module may import from its own floor and the floors below it, never above. Above the store (rlhf/,
labeler/ui/, app.py) the store is read and written through labeler/'s typed functions only: no query built,
no table row made, no statement run on a session there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "vllm", "gradio")

# floor -> the top-level names its modules must not import
FORBIDDEN = {
    "models": ("labeler", "rlhf", "app"),
    "labeler": ("rlhf", "models", "app", *HEAVY),
    "rlhf": ("labeler.ui", "app"),
    "labeler.ui": ("app",),
}


def floor_of(path: Path) -> str | None:
    parts = path.relative_to(REPO).parts
    if parts[0] == "labeler":
        return "labeler.ui" if len(parts) > 2 and parts[1] == "ui" else "labeler"
    return parts[0] if parts[0] in ("models", "rlhf") else None


def imported(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append((node.lineno, node.module))
    return names


def violations(path: Path, source: str | None = None) -> list[str]:
    floor = floor_of(path)
    if floor is None:
        return []
    bad = []
    for line, name in imported(source if source is not None else path.read_text(encoding="utf-8")):
        for banned in FORBIDDEN[floor]:
            if name == banned or name.startswith(banned + "."):
                bad.append(f"{path.relative_to(REPO)}:{line}: {floor} imports {name}")
    return bad


QUERY_BUILDERS = {"select", "col", "func", "insert", "update", "delete", "text"}
SESSION_CALLS = {"add", "add_all", "exec", "execute", "get", "delete", "merge", "scalar", "scalars"}


def table_classes() -> set[str]:
    """The table models in labeler/tables.py (classes declared with `table=True`)."""
    tree = ast.parse((REPO / "labeler" / "tables.py").read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            k.arg == "table" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords
        )
    }


def store_bypasses(path: Path, source: str | None = None) -> list[str]:
    """Where a module above the store builds a query, makes a row or runs a statement on a session itself."""
    tree = ast.parse(source if source is not None else path.read_text(encoding="utf-8"))
    tables, where = table_classes(), path.relative_to(REPO)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "sqlmodel",
            "sqlalchemy",
        ):
            bad += [
                f"{where}:{node.lineno}: imports {a.name}" for a in node.names if a.name in QUERY_BUILDERS
            ]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in tables:
            bad.append(f"{where}:{node.lineno}: makes a {node.func.id} row")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SESSION_CALLS
            and isinstance(node.func.value, ast.Name)
            and "session" in node.func.value.id
        ):
            bad.append(f"{where}:{node.lineno}: calls {node.func.value.id}.{node.func.attr}")
    return bad


ABOVE_STORE = sorted(
    [*(REPO / "rlhf").rglob("*.py"), *(REPO / "labeler" / "ui").rglob("*.py"), REPO / "app.py"]
)


@pytest.mark.parametrize("path", ABOVE_STORE, ids=lambda p: str(p.relative_to(REPO)))
def test_above_the_store_nothing_queries_or_writes_tables_itself(path):
    assert store_bypasses(path) == []


def test_the_store_check_catches_a_query_a_row_and_a_statement():
    probe = REPO / "rlhf" / "probe.py"  # never written: the source is given
    source = (
        "from sqlmodel import Session, select\n"
        "def f(session):\n"
        "    session.add(Job(kind='reward'))\n"
        "    return session.exec(select(Job)).all()\n"
    )
    assert [v.split(": ", 1)[1] for v in store_bypasses(probe, source)] == [
        "imports select",
        "calls session.add",
        "makes a Job row",
        "calls session.exec",
    ]


SOURCES = sorted(p for folder in ("models", "labeler", "rlhf") for p in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_from_a_floor_above_its_own(path):
    assert violations(path) == []


def test_the_check_catches_a_wrong_way_import():
    probe = REPO / "labeler" / "probe.py"  # never written: the source is given
    source = "def f():\n    from rlhf.ppo import run\n    import torch\n"
    assert [v.split(": ", 1)[1] for v in violations(probe, source)] == [
        "labeler imports rlhf.ppo",
        "labeler imports torch",
    ]


def namespace_parameters(source: str) -> list[str]:
    """Functions taking argparse's Namespace as a parameter (its fields are invisible to the type checker)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                if arg.annotation is not None and "Namespace" in ast.unparse(arg.annotation):
                    found.append(f"{node.name}({arg.arg})")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_function_below_app_takes_an_argparse_namespace(path):
    assert namespace_parameters(path.read_text(encoding="utf-8")) == []


def test_the_namespace_check_catches_one():
    assert namespace_parameters("import argparse\ndef f(args: argparse.Namespace): ...\n") == ["f(args)"]
