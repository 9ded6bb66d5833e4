"""Revisions by a constitution: the pre-generation worker adds the policy's critique-and-rewrite of one answer to a
share of new sets (tiny model, real SQLite); the constitution is versioned and checked."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from labeler.labels.browse import set_detail
from labeler.records.policies import ensure_initial_policy
from labeler.store.constitution import (
    current_constitution,
    read_default,
    save_constitution,
    set_revision_share,
)
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import add_prompts
from labeler.store.tables import Completion, CompletionSet
from tests.labeler.helpers import make_user
from tests.rlhf.test_pregen import _worker


def test_a_share_of_new_sets_gets_a_revision_shown_blind_with_its_principle_and_critique(tmp_path, tiny):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with Session(engine) as s:
        add_prompts(
            session=s, conversations=[[{"role": "user", "content": f"question {i}"}] for i in range(6)]
        )
        ensure_initial_policy(session=s, base_model="tiny")
        saved = save_constitution(
            session=s,
            principles=["Be brief."],
            critique_prompt="Critique {answer} to {prompt} by: {principle}",
            revision_prompt="Rewrite {answer} to {prompt} by {principle}, given {critique}",
            author="admin",
        )
        set_revision_share(session=s, share=1.0)
        alice_id = make_user(s, "alice").id
    worker = _worker(engine, tiny, buffer=2)
    while worker.step():
        pass
    with Session(engine) as s:
        sets = s.exec(select(CompletionSet)).all()
        revisions = s.exec(select(Completion).where(col(Completion.origin) == "revision")).all()
        assert len(sets) == 2 and len(revisions) == 2  # the tiny model always writes something
        for revision in revisions:
            source = s.get(Completion, revision.source_id)
            assert source is not None and source.set_id == revision.set_id and source.origin == "generated"
            assert (
                revision.detail["principle"] == "Be brief."
                and revision.detail["constitution"] == saved.version
            )
            assert revision.detail["critique"]
        # shown blind: a lease holds the revision among the set's answers, nothing marks it
        leased = lease_next_set(session=s, user_id=alice_id)
        assert len(leased.completions) == 4 and "revision" in {c.origin for c in leased.completions}
        detail = set_detail(session=s, set_id=leased.set.id)
        assert detail.revisions and detail.revisions[0].principle == "Be brief."
        # the time it took counts as the set's generation time
        assert all(x.generation_seconds and x.generation_seconds > 0 for x in sets)


def test_revisions_are_off_until_a_share_is_set(tmp_path, tiny):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with Session(engine) as s:
        add_prompts(session=s, conversations=[[{"role": "user", "content": "q"}]])
        ensure_initial_policy(session=s, base_model="tiny")
    worker = _worker(engine, tiny, buffer=1)
    assert worker.step() == 1
    with Session(engine) as s:
        assert {c.origin for c in s.exec(select(Completion)).all()} == {"generated"}


def test_the_default_constitution_and_bad_versions_say_what_is_wrong(session):
    default = read_default()
    assert current_constitution(session=session) == default and default.version == 0
    assert len(default.principles) == 4 and "{critique}" in default.revision_prompt
    good = {"principles": ["Be kind."], "critique_prompt": "{prompt} {answer}", "author": "a"}
    with pytest.raises(ValueError, match="must show"):
        save_constitution(session=session, **good, revision_prompt="{prompt} {answer}")
    with pytest.raises(ValueError, match="may use only"):
        save_constitution(session=session, **good, revision_prompt="{prompt} {answer} {critique} {nope}")
    with pytest.raises(ValueError, match="1 to 64 principles"):
        save_constitution(session=session, **{**good, "principles": [" "]}, revision_prompt="{critique}")
    first = save_constitution(session=session, **good, revision_prompt="{prompt} {answer} {critique}")
    second = save_constitution(session=session, **good, revision_prompt="{answer} {prompt} {critique}")
    assert (first.version, second.version) == (1, 2) and current_constitution(session=session) == second
    with pytest.raises(ValueError, match="between 0 and 1"):
        set_revision_share(session=session, share=1.5)
