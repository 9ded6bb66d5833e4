"""The house's floors, checked by reading every module's source (ast, lazy imports inside functions included).

`FLOORS` lists the folders bottom up, one job each: a module may import from its own folder and the folders
listed before it, never after. The labeler's folders stay torch-free, and no product module imports the
simulated labelers or the load client (they live in bench/). Above the store (rlhf/, labeler/ui/, app.py) the
store is read and written through labeler/'s typed functions only: no query built, no table row made, no
statement run on a session there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes", "vllm", "gradio")

FLOORS = [
    "models",  # loading models, adapters, generation backends, tiny test models (torch; no project imports)
    "labeler/store",  # the store: tables, typed writes, leasing, users, log-in, settings, Alembic migrations
    "labeler/records",  # what training and background work record: jobs, reward models, versions, rounds, workers
    "labeler/labels",  # label maths: pairs, consensus, reliability, gold, quality, costs, win-rate, datasets
    "labeler/io",  # reading files, import and export
    "labeler",  # the store's command line
    "rlhf/train",  # the training stages, their configs and registry, the gate
    "rlhf/select",  # what to label next
    "rlhf/serve",  # the job runner, the pre-generation worker, processes and their monitor
    "rlhf",  # the training side's command line
    "labeler/ui",  # the Gradio app (floor 4: the UI; kept under labeler/, see docs/architecture.md)
    "labeler/api",  # the REST API (floor 4 too, a thin shell over the floors below and the page's checks)
    "app.py",  # the entry point
]
TORCH_FREE = ("labeler/store", "labeler/records", "labeler/labels", "labeler/io", "labeler")
OUT_OF_PRODUCT = ("simulate", "load_client")  # bench/: simulated labelers and the load-test client


def folder_of(parts: tuple[str, ...]) -> str | None:
    """The floor of a module, by its path's parts or its dotted name's (a package's modules sit in its folder;
    `labeler` and `rlhf` hold only the files directly inside them)."""
    for floor in sorted(FLOORS, key=len, reverse=True):
        prefix = tuple(floor.split("/"))
        if floor == "app.py":
            if parts[:1] in (("app.py",), ("app",)):
                return floor
        elif parts[: len(prefix)] == prefix and (floor not in ("labeler", "rlhf") or len(parts) == 2):
            return floor
    return None


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
    """Where `path` imports from a floor above its own, a heavy library where it must stay torch-free, or the
    simulation."""
    own = folder_of(path.relative_to(REPO).parts)
    if own is None:
        return []
    bad = []
    for line, name in imported(source if source is not None else path.read_text(encoding="utf-8")):
        where = f"{path.relative_to(REPO)}:{line}: {own} imports {name}"
        top = name.split(".")[0]
        theirs = folder_of(tuple(name.split(".")))
        if (
            (theirs is not None and FLOORS.index(theirs) > FLOORS.index(own))
            or (own in TORCH_FREE and top in HEAVY)
            or top in OUT_OF_PRODUCT
            or (own == "models" and top in ("labeler", "rlhf", "app"))
        ):
            bad.append(where)
    return bad


QUERY_BUILDERS = {"select", "col", "func", "insert", "update", "delete", "text"}
SESSION_CALLS = {"add", "add_all", "exec", "execute", "get", "delete", "merge", "scalar", "scalars"}


def table_classes() -> set[str]:
    """The table models in labeler/store/tables.py (classes declared with `table=True`)."""
    tree = ast.parse((REPO / "labeler" / "store" / "tables.py").read_text(encoding="utf-8"))
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
    [
        *(REPO / "rlhf").rglob("*.py"),
        *(REPO / "labeler" / "ui").rglob("*.py"),
        *(REPO / "labeler" / "api").rglob("*.py"),
        REPO / "app.py",
    ]
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
    probe = REPO / "labeler" / "labels" / "probe.py"  # never written: the source is given
    source = (
        "def f():\n    from rlhf.train.ppo import run\n    import torch\n"
        "    from labeler.io.export import export\n    from simulate import SimulatedLabeler\n"
        "    from labeler.store.tables import Job\n"
    )
    assert [v.split(": ", 1)[1] for v in violations(probe, source)] == [
        "labeler/labels imports rlhf.train.ppo",
        "labeler/labels imports torch",
        "labeler/labels imports labeler.io.export",
        "labeler/labels imports simulate",
    ]


def test_every_product_module_sits_on_a_floor():
    assert [str(p.relative_to(REPO)) for p in SOURCES if folder_of(p.relative_to(REPO).parts) is None] == []


def module_graph() -> dict[str, set[str]]:
    """Every product module's project imports (lazy ones included), by dotted name."""
    names = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): p for p in SOURCES
    }
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        graph[name] = {m for _, m in imported(path.read_text(encoding="utf-8")) if m in names and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles in `graph` (one per strongly connected group of two or more modules, Tarjan's method)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    assert cycles(module_graph()) == []


def test_the_cycle_check_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


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
