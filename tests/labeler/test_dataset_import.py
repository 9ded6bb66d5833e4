"""Importing from a dataset by name or from a dataset's files (datasets.load_dataset), with a split and columns
mapped to the importers' fields: tested on a local folder, since no hub is reachable here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from app import main
from labeler.io.formats import ImportFormatError, Source
from labeler.io.importers import import_prompts
from labeler.store.db import make_engine
from labeler.store.tables import Prompt, Ranking

REPO = Path(__file__).resolve().parents[2]


def dataset_folder(tmp_path):
    folder = tmp_path / "qa"
    (folder / "data").mkdir(parents=True)
    rows = [{"question": f"Question {i}?", "good": f"A good answer {i}.", "bad": "No."} for i in range(3)]
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "data" / "test.jsonl").write_text(
        json.dumps({"question": "Held?", "good": "Yes.", "bad": "No."}) + "\n"
    )
    return folder


def test_pairs_and_prompts_import_from_a_datasets_files_with_a_split_and_mapped_columns(tmp_path, capsys):
    folder, home = dataset_folder(tmp_path), str(tmp_path)
    columns = ["--column", "prompt=question", "--column", "chosen=good", "--column", "rejected=bad"]
    assert main(["import", "pairs", str(folder), *columns, "--home", home]) == 0
    assert "imported 3 pairs" in capsys.readouterr().out
    assert main(["import", "prompts", str(folder), "--split", "test", "--column", "prompt=question", "--home", home]) == 0  # fmt: skip
    engine = make_engine(f"sqlite:///{tmp_path / 'rankloop.db'}")
    with Session(engine) as s:
        asked = {p.messages[-1]["content"] for p in s.exec(select(Prompt)).all()}
        assert asked == {"Question 0?", "Question 1?", "Question 2?", "Held?"}
        assert len(s.exec(select(Ranking)).all()) == 3
    assert main(["import", "prompts", str(folder), "--column", "prompt", "--home", home]) == 1
    assert "write FIELD=COLUMN" in capsys.readouterr().err


def test_a_missing_column_or_split_is_refused_by_name(tmp_path, engine):
    folder = dataset_folder(tmp_path)
    with Session(engine) as s:
        with pytest.raises(
            ImportFormatError, match=r"qa:1: field 'query': no such column \(columns: question"
        ):
            import_prompts(session=s, path=folder, source=Source(columns={"prompt": "query"}))
        with pytest.raises(ImportFormatError, match="no dataset loads by that name"):
            import_prompts(session=s, path=folder, source=Source(split="validation"))
        assert s.exec(select(Prompt)).first() is None


def test_a_dataset_name_the_hub_cannot_give_is_refused_from_the_command_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}  # no hub here: fail at once
    command = [
        sys.executable,
        "-m",
        "app",
        "import",
        "prompts",
        "owner/missing-dataset",
        "--home",
        str(tmp_path),
    ]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "owner/missing-dataset: not a file, and no dataset loads by that name" in done.stderr
