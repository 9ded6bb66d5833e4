import gzip
import json
from pathlib import Path

import pytest
from sqlmodel import func, select

from labeler.io.export import export_preferences, export_raw_rankings
from labeler.io.formats import ImportFormatError, to_transcript
from labeler.io.importers import PromptImport, import_pairs, import_prompts, parse_pairs
from labeler.labels.dataset import preference_records
from labeler.labels.gold import mark_gold
from labeler.labels.pairs import PairSettings
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, get_or_add_prompt, submit_ranking
from labeler.store.tables import Completion, CompletionSet, Prompt, Ranking, id_of
from tests.labeler.helpers import make_sets, make_user


def count(session, table):
    return session.exec(select(func.count(table.id))).one()


def test_hh_import_gives_1500_pairs_that_rebuild_the_transcripts(session, hh_file):
    result = import_pairs(session=session, path=hh_file)
    assert result.added == 1500
    records = preference_records(session=session)
    assert len(records) == 1500
    with gzip.open(hh_file, "rt", encoding="utf-8") as fh:
        originals = [json.loads(line) for line in fh]
    by_set = sorted(records, key=lambda r: r.set_id)
    for record, original in zip(by_set, originals, strict=True):
        assert to_transcript(record.prompt, record.chosen) == original["chosen"]
        assert to_transcript(record.prompt, record.rejected) == original["rejected"]
        assert record.origin == "imported"
    assert import_pairs(session=session, path=hh_file).already_present == 1500
    assert count(session, Ranking) == 1500
    # each imported set holds its one label, so none waits for a labeler
    assert set(session.exec(select(CompletionSet.labels_done)).all()) == {1}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "hf"])
def test_export_then_import_round_trips(tmp_path, session, engine, hh_file, fmt):
    import_pairs(session=session, path=hh_file)
    before = {(json.dumps(r.prompt), r.chosen, r.rejected) for r in preference_records(session=session)}
    result = export_preferences(session=session, out=tmp_path / "out", fmt=fmt)
    assert result.pairs == 1500
    card = (tmp_path / "out" / "README.md").read_text()
    assert "pairs: 1500" in card and '"keep_ties": false' in card
    from sqlmodel import Session

    from labeler.store.db import make_engine

    with Session(make_engine("sqlite://")) as fresh:
        assert import_pairs(session=fresh, path=result.paths[0]).added == 1500
        after = {(json.dumps(r.prompt), r.chosen, r.rejected) for r in preference_records(session=fresh)}
    assert after == before


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)  # trains trl; the store part is covered above
def test_exported_parquet_trains_trl_reward_and_dpo(tmp_path, session, hh_file):
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from models.tiny import save_tiny_checkpoint, tiny_tokenizer

    import_pairs(session=session, path=hh_file)
    parquet = export_preferences(session=session, out=tmp_path / "out").paths[0]
    data = load_dataset("parquet", data_files=str(parquet), split="train").select(range(16))
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny")
    tokenizer = tiny_tokenizer()
    common = {
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "report_to": [],
        "save_strategy": "no",
        "max_length": 256,
        "use_cpu": True,
    }
    reward_model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=1)
    reward = RewardTrainer(
        model=reward_model,
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **common),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert reward.train().training_loss > 0
    policy = AutoModelForCausalLM.from_pretrained(checkpoint)
    dpo = DPOTrainer(
        model=policy,
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), **common),
        train_dataset=data,
        processing_class=tokenizer,
    )
    assert dpo.train().training_loss > 0


def test_raw_export_keeps_ties_flags_and_display_order(tmp_path, session):
    alice = make_user(session, "alice")
    make_sets(session, 1)
    leased = lease_next_set(session=session, user_id=alice.id)
    a, b, c, d = (x.id for x in leased.completions)
    submit_ranking(
        session=session,
        ranking=RankingIn(
            set_id=leased.set.id,
            user_id=alice.id,
            submission_id="r1",
            ranks={a: 1, b: 1, c: 2},
            flags={d: "harmful"},
            comment="tie",
        ),
    )
    line = json.loads((export_raw_rankings(session=session, out=tmp_path)).read_text().splitlines()[0])
    assert line["ranks"] == {str(a): 1, str(b): 1, str(c): 2}
    assert line["flags"] == {str(d): "harmful"}
    assert line["display_order"] == [a, b, c, d] and line["labeler"] == "alice"
    tied = export_preferences(
        session=session, out=tmp_path / "t", fmt="jsonl", settings=PairSettings(keep_ties=True)
    )
    assert tied.pairs == 3


def test_prompt_formats(tmp_path, session):
    (tmp_path / "p.txt").write_text("first prompt\n\nsecond prompt\n")
    (tmp_path / "p.csv").write_text('prompt,system\n"third, with comma",Be brief.\n')
    (tmp_path / "p.jsonl").write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    {"role": "user", "content": "and?"},
                ]
            }
        )
        + "\n"
        + json.dumps({"prompt": "first prompt"})
        + "\n"
    )
    assert import_prompts(session=session, path=tmp_path / "p.txt").added == 2
    assert import_prompts(session=session, path=tmp_path / "p.csv").added == 1
    assert import_prompts(session=session, path=tmp_path / "p.jsonl") == PromptImport(
        1, 1
    )  # the duplicate is skipped
    prompts = session.exec(select(Prompt).order_by(Prompt.id)).all()
    assert prompts[2].messages[0] == {"role": "system", "content": "Be brief."}
    assert len(prompts[3].messages) == 3


BAD_INPUTS = {
    "bad_json.jsonl": (
        b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "x", \n',
        r"bad_json.jsonl:2: not valid JSON",
    ),
    "missing.jsonl": (
        b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n',
        r"missing.jsonl:2: field 'rejected': missing",
    ),
    "empty.jsonl": (b"", r"empty.jsonl: file is empty"),
    "latin1.jsonl": (
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "caf\u00e9", "chosen": "b", "rejected": "c"}\n'.encode(
            "latin-1"
        ),
        r"latin1.jsonl:2: not valid UTF-8",
    ),
    "badmsg.jsonl": (
        b'{"prompt": [{"role": "robot", "content": "x"}], "chosen": "b", "rejected": "c"}\n',
        r"badmsg.jsonl:1: field 'prompt\[0\]'",
    ),
    "huge_field.csv": (
        b"prompt,chosen,rejected\nq,a,b\n" + b'"' + b"x" * 140_000 + b'",a,b\n',
        r"huge_field.csv:3: not valid CSV \(field larger than field limit",
    ),
    "nested.jsonl": (
        b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        r"nested.jsonl:1: JSON nested",
    ),
    "not_gzip.jsonl.gz": (
        b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n',
        r"not_gzip.jsonl.gz: not a valid gzip",
    ),
    "garbage.parquet": (b"PAR1 this is not parquet at all", r"garbage.parquet: not a readable Parquet file"),
    "inf_margin.jsonl": (
        b'{"prompt": "a", "chosen": "b", "rejected": "c", "margin": "Infinity"}\n',
        r"inf_margin.jsonl:1: field 'margin': expected a finite number",
    ),
    "huge_margin.jsonl": (
        b'{"prompt": "a", "chosen": "b", "rejected": "c", "margin": 1e999}\n',
        r"huge_margin.jsonl:1: field 'margin': expected a finite number",
    ),
    "same.jsonl": (
        b'{"prompt": "a", "chosen": "same", "rejected": " same "}\n',
        r"same.jsonl:1: field 'rejected': is the same answer as chosen",
    ),
    "assistant_last.jsonl": (
        b'{"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], '
        b'"chosen": "b", "rejected": "c"}\n',
        r"assistant_last.jsonl:1: field 'prompt': the last message must be the user's",
    ),
    "lone_surrogate.jsonl": (
        b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
        b'{"prompt": [{"role": "user", "content": "x\\ud800"}], "chosen": "b", "rejected": "c"}\n',
        r"lone_surrogate.jsonl:2: field 'prompt\[0\].content': holds a lone surrogate",
    ),
    "same_id_other_pair.jsonl": (
        b'{"id": 7, "prompt": "a", "chosen": "b", "rejected": "c"}\n'
        b'{"id": 7, "prompt": "a", "chosen": "b", "rejected": "c"}\n'
        b'{"id": 7, "prompt": "a", "chosen": "c", "rejected": "b"}\n',
        r"same_id_other_pair.jsonl:3: field 'id': '7' is also the id of line 1, whose content differs",
    ),
    "one_huge_line.jsonl": (
        b'{"prompt": "' + b"x" * (5 << 20) + b'", "chosen": "b", "rejected": "c"}\n',
        r"one_huge_line.jsonl:1: the line is longer than 4,194,304 bytes",
    ),
    "huge_prompt.jsonl": (
        b'{"prompt": "' + b"x" * 200_000 + b'", "chosen": "b", "rejected": "c"}\n',
        r"huge_prompt.jsonl:1: field 'prompt': is 200,000 characters long; at most 100,000",
    ),
}


def test_a_byte_order_mark_is_accepted(tmp_path, session):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    assert import_pairs(session=session, path=path).added == 1


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_pair_files_fail_clearly_and_write_nothing(tmp_path, session, name):
    content, message = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImportFormatError, match=message):
        import_pairs(session=session, path=path)
    for table in (Prompt, CompletionSet, Completion, Ranking):
        assert count(session, table) == 0


def test_bad_prompt_file_writes_nothing(tmp_path, session):
    path = tmp_path / "p.csv"
    path.write_text("question\nfine\n")
    with pytest.raises(ImportFormatError, match=r"p.csv:2: field 'prompt': missing"):
        import_prompts(session=session, path=path)
    assert count(session, Prompt) == 0


def test_hh_pair_without_shared_assistant_turn_is_reported(tmp_path):
    path = tmp_path / "hh.jsonl"
    path.write_text(
        json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "no transcript"}) + "\n"
    )
    with pytest.raises(ImportFormatError, match=r"hh.jsonl:1: field 'chosen': not an HH transcript pair"):
        parse_pairs(Path(path))


def _rank_all(session, user, orders: dict[int, list[int]]) -> None:
    """`user` leases every set offered and ranks it in the given order of answer positions."""
    while (leased := lease_next_set(session=session, user_id=user.id)) is not None:
        ids = [id_of(c) for c in sorted(leased.completions, key=lambda c: c.position)]
        set_id = id_of(leased.set)
        order = orders[set_id]
        submit_ranking(
            session=session,
            ranking=RankingIn(
                set_id=set_id,
                user_id=user.id,
                submission_id=f"{user.name}-{set_id}",
                ranks={ids[p]: rank for rank, p in enumerate(order, start=1)},
            ),
        )


def test_every_exported_pair_carries_its_provenance(tmp_path, session):
    alice, bob, carol = (make_user(session, name) for name in ("alice", "bob", "carol"))
    prompt = get_or_add_prompt(session=session, messages=[{"role": "user", "content": "made by the worker"}])
    sampling, chosen = {"temperature": 0.8, "max_new_tokens": 72}, {"by": "uncertainty", "score": 0.71}
    made, _ = add_completion_set(
        session=session,
        prompt_id=prompt.id,
        completions=[CompletionIn(f"answer {j}") for j in range(3)],
        policy_version_id=None,
        sampling=sampling,
        selection=chosen,
        labels_needed=3,
    )
    [plain] = make_sets(session, 1, n=3, labels_needed=3)
    _rank_all(session, alice, {made.id: [0, 1, 2], plain.id: [0, 1, 2]})
    _rank_all(session, bob, {made.id: [0, 1, 2], plain.id: [1, 0, 2]})  # bob disagrees on one pair of `plain`
    _rank_all(session, carol, {made.id: [0, 1, 2], plain.id: [0, 1, 2]})
    mark_gold(session=session, set_id=plain.id, ranks=[1, 2, 3])  # a gold copy: scores labelers, not exported

    result = export_preferences(session=session, out=tmp_path / "m", fmt="jsonl")
    rows = [json.loads(x) for x in (tmp_path / "m" / "preferences.jsonl").read_text().splitlines()]
    assert result.pairs == len(rows) == 6 and {r["set_id"] for r in rows} == {made.id, plain.id}
    # the preview is the first rows as written, and the counts by agreement add up to every pair
    assert [p["chosen"] for p in result.preview] == [r["chosen"][-1]["content"][:200] for r in rows[:5]]
    assert sum(result.by_agreement.values()) == 6 and set(result.by_agreement) <= {"unanimous", "majority"}
    assert all(r["labelers"] == ["alice", "bob", "carol"] and r["consensus"] == "majority" for r in rows)
    assert all(r["weight"] == 1.0 for r in rows)
    worker_made = [r for r in rows if r["set_id"] == made.id]
    assert all(
        json.loads(r["sampling"]) == sampling and json.loads(r["selection"]) == chosen for r in worker_made
    )
    assert all(r["selection"] is None for r in rows if r["set_id"] == plain.id)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "human minutes (server-measured, lease to submit)" in card and "consensus: equal weights" in card

    weighted = export_preferences(session=session, out=tmp_path / "r", fmt="jsonl", weights="reliability")
    rows = [json.loads(x) for x in (tmp_path / "r" / "preferences.jsonl").read_text().splitlines()]
    assert weighted.pairs == len(rows) and all(r["consensus"] == "reliability" for r in rows)
    assert all(0 < r["weight"] <= 1 for r in rows)
    texts = lambda r: {r["chosen"][0]["content"], r["rejected"][0]["content"]}  # noqa: E731
    split = [r for r in rows if r["set_id"] == plain.id and texts(r) == {"answer 0.0", "answer 0.1"}]
    assert len(split) == 1
    agreed = [r for r in rows if r["set_id"] == made.id]
    assert all(s["weight"] < a["weight"] for s in split for a in agreed)  # a split vote counts less
    with pytest.raises(ValueError, match="unknown labeler weights 'loud'"):
        export_preferences(session=session, out=tmp_path / "x", weights="loud")


def test_a_gzip_bomb_is_refused_before_it_is_expanded(tmp_path, session):
    """A 61 KB gzip holding one 60 MiB line, and one of many short lines expanding past its limit: each is
    refused with its line, having held a few MiB at most."""
    import tracemalloc

    from labeler.io.formats import MIN_DECOMPRESSED_LIMIT

    one_line = tmp_path / "one_line.jsonl.gz"
    with gzip.open(one_line, "wb") as fh:
        fh.write(b'{"prompt": "' + b"a" * (60 << 20) + b'", "chosen": "b", "rejected": "c"}\n')
    many = tmp_path / "many.jsonl.gz"
    line = json.dumps({"prompt": "p" * 900, "chosen": "b", "rejected": "c"}).encode() + b"\n"
    with gzip.open(many, "wb") as fh:
        fh.write(line * (MIN_DECOMPRESSED_LIMIT // len(line) + 10))
    assert one_line.stat().st_size < 100_000 and many.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ImportFormatError, match=r"one_line.jsonl.gz:1: the line is longer than"):
            import_pairs(session=session, path=one_line)
        peak = tracemalloc.get_traced_memory()[1]
        with pytest.raises(ImportFormatError, match=r"many.jsonl.gz:\d+: the file decompresses to more than"):
            import_pairs(session=session, path=many)
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MiB held for a refused file"
    for table in (Prompt, CompletionSet, Completion, Ranking):
        assert count(session, table) == 0


def test_a_repeated_id_on_identical_records_is_one_record(tmp_path, session):
    path = tmp_path / "ids.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "p", "chosen": "b", "rejected": "c"}\n'
        '{"id": "a", "prompt": "p", "chosen": "b", "rejected": "c"}\n'
        '{"id": "b", "prompt": "p", "chosen": "c", "rejected": "b"}\n'
    )
    assert import_pairs(session=session, path=path).added == 2
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": 1, "prompt": "one"}\n{"id": 1, "prompt": "two"}\n')
    with pytest.raises(ImportFormatError, match=r"prompts.jsonl:2: field 'id': '1' is also the id of line 1"):
        import_prompts(session=session, path=prompts)


def test_the_export_preview_reads_only_the_newest_sets_and_says_what_the_export_reads(tmp_path, session):
    """The preview's rows are the export's rows for the newest sets, newest first, at the same settings; its note
    says how many sets it read and how many the export will."""
    from labeler.io.export_preview import preview_export, preview_note

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
            for i in range(6)
        )
    )
    assert import_pairs(session=session, path=pairs).added == 6
    preview = preview_export(session=session, newest=2)
    assert (preview.sets_read, preview.ranked_sets, preview.pairs) == (2, 6, 2)
    assert [r["chosen"] for r in preview.rows] == ["good 5", "good 4"]
    assert "newest 2 ranked sets (2 pairs from them); the export reads all 6" in preview_note(preview)
    written = export_preferences(session=session, out=tmp_path / "out", fmt="jsonl")
    assert {r["chosen"] for r in written.preview} >= {"good 0"}  # the export reads every set
    assert "Nothing to export yet" in preview_note(preview_export(session=session, origins=["generated"]))
    weighted = preview_export(session=session, weights="reliability")
    assert weighted.weighted and "fitted on those sets only" in preview_note(weighted)
