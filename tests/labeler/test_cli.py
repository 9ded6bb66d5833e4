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


def test_export_with_reliability_weights_from_the_command_line(tmp_path, capsys):
    from tests.rlhf.synthetic import LABELERS_WITH_ADVERSARY, add_ranked_sets, synthetic_store

    url, _ = synthetic_store(tmp_path, sets=0)  # the store is the home's rankloop.db
    add_ranked_sets(url, 6, labelers=LABELERS_WITH_ADVERSARY)
    out = tmp_path / "out"
    argv = [
        "export",
        "--home",
        str(tmp_path),
        "--format",
        "jsonl",
        "--out",
        str(out),
        "--weights",
        "reliability",
    ]
    assert main(argv) == 0
    assert "exported" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert rows and all(r["consensus"] == "reliability" and 0 < r["weight"] <= 1 for r in rows)
    assert set(rows[0]["labelers"]) == {"honest-a", "honest-b", "adversary"}
    assert "consensus: reliability weights" in (out / "README.md").read_text()


def test_selection_names_what_the_newest_reward_model_gives_it(tmp_path, capsys):
    """`rankloop selection` says which measure uncertainty selection reads, and warns of a one-head model."""
    from sqlmodel import Session

    from labeler.records.reward_models import RewardFacts, register_reward_model
    from labeler.store.db import make_engine

    home = tmp_path / "home"
    assert main(["selection", "--home", str(home), "--mode", "uncertainty", "--oversample", "8"]) == 0
    assert "There is no reward model yet" in capsys.readouterr().out
    engine = make_engine(f"sqlite:///{home / 'rankloop.db'}")
    said = {}
    for name, facts in [("r1", RewardFacts()), ("r2", RewardFacts(heads=4)), ("r3", RewardFacts(ensemble=3)), ("r4", RewardFacts(information=True))]:  # fmt: skip
        with Session(engine) as s:
            register_reward_model(session=s, name=name, base_model="tiny", adapter_path=str(tmp_path / name), snapshot_path=None, facts=facts, metrics={}, job_id=None)  # fmt: skip
        assert main(["selection", "--home", str(home)]) == 0
        said[name] = capsys.readouterr().out
    assert (
        "8 candidates per kept set" in said["r1"]
        and "one score head and no saved precision, so selection reads its doubt" in said["r1"]
    )
    assert "--heads 4" in said["r1"]
    assert "Reward model r2: selection reads where its 4 score heads disagree." in said["r2"]
    assert "Reward model r3: selection reads where its 3 models disagree." in said["r3"]
    assert "Reward model r4: selection keeps the sets a label would teach it most" in said["r4"]


def test_tokens_and_webhooks_from_the_command_line(tmp_path, capsys):
    home = ["--home", str(tmp_path)]
    assert main(["user", "add", "ana", *home]) == 0
    assert main(["token", "add", "ana", "--name", "survey tool", *home]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("rlk_")
    assert main(["token", "list", *home]) == 0
    listed = capsys.readouterr().out
    assert "ana (labeler) 'survey tool', active, 0 calls, never used" in listed and secret not in listed
    assert main(["token", "revoke", "1", *home]) == 0 and "revoked token 1" in capsys.readouterr().out
    assert main(["token", "list", *home]) == 0 and "revoked" in capsys.readouterr().out
    hook = ["webhook", "add", "https://ci.example/hook", "--event", "job.failed", "--event", "job.succeeded"]
    assert main([*hook, *home]) == 0
    said = capsys.readouterr().out
    assert "webhook 1 -> https://ci.example/hook for job.failed, job.succeeded" in said and "whsec_" in said
    assert main(["webhook", "disable", "1", *home]) == 0
    assert main(["webhook", "list", *home]) == 0 and "(disabled)" in capsys.readouterr().out
    assert main(["webhook", "add", "ftp://x", "--event", "job.failed", *home]) == 1
