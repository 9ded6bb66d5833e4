"""The house's floors, checked by reading every import (ast, lazy ones inside functions included):

    models/  (torch, no project imports)  <-  labeler/  (store and label logic, torch-free)
        <-  rlhf/  (training stages, job runner, pre-generation)  <-  labeler/ui/  (the Gradio app)  <-  app.py

A module may import from its own floor and the floors below it, never above."""

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
