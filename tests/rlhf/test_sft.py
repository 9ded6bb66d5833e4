"""`rankloop sft` end to end on the tiny model: labelers' edits and an SFT file become a new version whose held-out
answers are likelier than before; a bad SFT file is refused with file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, PageChoices, add_completion_set, submit_leased
from labeler.store.tables import PolicyVersion, Prompt, id_of
from labeler.store.users import add_user
from rlhf.train.sft import SFTDataError, read_sft_file
from tests.rlhf.ppo_helpers import ppo_store, saved_adapter

REPO = Path(__file__).resolve().parents[2]


def edit_every_set(url: str) -> None:
    """A labeler ranks one set per prompt and rewrites its best answer as "ok ok ok"."""
    engine = make_engine(url)
    with Session(engine) as s:
        labeler = id_of(add_user(session=s, name="ann", password="ann-password"))
        v0 = s.exec(select(PolicyVersion)).one().id
        prompts = [id_of(p) for p in s.exec(select(Prompt).order_by(col(Prompt.id))).all()]
        for prompt_id in prompts:
            answers = [CompletionIn("no"), CompletionIn("maybe later")]
            add_completion_set(session=s, prompt_id=prompt_id, completions=answers, policy_version_id=v0)
        for i in range(len(prompts)):
            leased = lease_next_set(session=s, user_id=labeler, seed=i)
            assert leased is not None
            page = PageChoices(ranks=[1, 2], flags=[None, None], edits=["ok ok ok", None])
            submit_leased(session=s, lease=leased.assignment, choices=page)
    engine.dispose()


def test_rankloop_sft_trains_on_edits_and_a_file_and_its_heldout_answers_get_likelier(tmp_path):
    url, _ = ppo_store(tmp_path)
    edit_every_set(url)
    extra = tmp_path / "sft.jsonl"
    rows = [
        {"prompt": f"say ok {i}", "completion": [{"role": "assistant", "content": "ok ok ok"}]}
        for i in range(4)
    ]
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--home", str(tmp_path), "--db", url, "--data", str(extra), "--epochs", "3", "--batch_size", "4"]
    args += [
        "--learning_rate",
        "5e-3",
        "--max_length",
        "64",
        "--sample_prompts",
        "1",
        "--max_new_tokens",
        "4",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "app", "sft", *args, "--device", "cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with Session(make_engine(url)) as s:
        versions = s.exec(select(PolicyVersion).order_by(col(PolicyVersion.version))).all()
    assert [v.version for v in versions] == [0, 1] and not versions[
        1
    ].is_current  # a candidate until switched
    final = versions[1].metrics["final"]
    assert final["heldout_answers"] > 0 and final["heldout_nll_after"] < final["heldout_nll_before"]
    by_source = versions[1].metrics["sft"]["by_source"]
    assert by_source.get("edit", 0) > 0 and by_source.get("sft.jsonl", 0) > 0
    assert saved_adapter(versions[1].adapter_path)  # a PEFT folder like every version's


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", ":1: not JSON"),
        ('{"prompt": "hi"}', ":1: field 'completion' is missing"),
        ('{"prompt": 3, "completion": "x"}', ":1: field 'prompt' must be"),
        (
            '{"prompt": "hi", "completion": [{"role": "user", "content": "x"}]}',
            "must be the assistant's turn",
        ),
        ('{"prompt": "hi", "completion": "  "}', "field 'completion' must be a non-empty"),
    ],
)
def test_a_bad_sft_file_is_refused_with_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(SFTDataError, match=message) as caught:
        read_sft_file(path)
    assert str(path) in str(caught.value)


def v1_answers(url: str) -> int:
    with Session(make_engine(url)) as s:
        return s.exec(select(PolicyVersion).where(PolicyVersion.version == 1)).one().metrics["sft"]["answers"]


def test_a_round_with_sft_fine_tunes_first_and_its_dpo_goes_on_from_that_version(tmp_path):
    from labeler.store.tables import TrainingRound
    from rlhf.train import round as round_stage
    from rlhf.train.configs import RoundConfig

    url, _ = ppo_store(tmp_path)
    edit_every_set(url)
    config = RoundConfig(
        home=str(tmp_path), db=url, device="cpu", sft=True, sft_epochs=1,
        dpo_max_new_tokens=4, dpo_kl_budget=None,
    )  # fmt: skip
    result = round_stage.run(config)
    assert "sft" in result.stage_seconds and "dpo" in result.stage_seconds
    assert result.sft_answers == v1_answers(url) > 0  # the duration estimate's unit of work
    with Session(make_engine(url)) as s:
        v0, v1, v2 = s.exec(select(PolicyVersion).order_by(col(PolicyVersion.version))).all()
        [round_] = s.exec(select(TrainingRound)).all()
    assert v1.metrics["optimizer"] == "sft" and not v1.is_current and v1.parent_id == v0.id
    assert v2.metrics["optimizer"] == "dpo" and v2.parent_id == v1.id  # DPO continued the SFT adapter
    assert round_.parent_version_id == v0.id and round_.new_version_id == v2.id


def test_a_rounds_sft_stage_is_skipped_when_there_is_nothing_to_learn(tmp_path):
    from rlhf.train.configs import RoundConfig
    from rlhf.train.progress import ConsoleReporter
    from rlhf.train.round import sft_first

    url, _ = ppo_store(tmp_path)  # prompts, v0, nothing ranked
    config = RoundConfig(home=str(tmp_path), db=url, device="cpu", sft=True)
    common = {"home": str(tmp_path), "db": url, "seed": 0, "device": "cpu"}
    assert sft_first(config, common, ConsoleReporter(), None) is None
    assert sft_first(RoundConfig(home=str(tmp_path), db=url), common, ConsoleReporter(), None) is None  # off
