"""`rankloop import pairs` and `rankloop export` as the README shows them, through the real command line."""

from __future__ import annotations

import json

from app import main


def test_import_pairs_then_export_with_raw_rankings(tmp_path, hh_file, capsys):
    home, out = tmp_path / "home", tmp_path / "out"
    assert main(["import", "pairs", str(hh_file), "--home", str(home)]) == 0
    assert main(["export", "--home", str(home), "--format", "jsonl", "--out", str(out), "--raw"]) == 0
    printed = capsys.readouterr().out
    assert "exported 1500 pairs from 1500 sets" in printed and "raw rankings:" in printed
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    raw = (out / "rankings.jsonl").read_text().splitlines()
    assert len(rows) == 1500 == len(raw) and {"prompt", "chosen", "rejected"} <= set(rows[0])
    assert (out / "README.md").exists() and json.loads((out / "export.json").read_text())["pairs"] == 1500
