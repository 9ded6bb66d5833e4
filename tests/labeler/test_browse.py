"""Browsing the store: prompts by text and split, ranked sets by labeler, version, flags and disagreement, and one
set with every label, the consensus and its pairs. Real SQLite, labels submitted through leases."""

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from labeler.labels.browse import (
    find_prompts,
    find_ranked_sets,
    last_user_turn,
    order_text,
    raw_agreement,
    set_detail,
)
from labeler.labels.pairs import RankingView
from labeler.store.leasing import lease_next_set
from labeler.store.settings import set_labels_needed
from labeler.store.store import PageChoices, submit_leased
from labeler.store.tables import Completion, CompletionSet, Prompt
from labeler.store.users import get_user
from tests.ui.conftest import seeded_engine


def _rank(engine, name: str, choices: PageChoices) -> int:
    with Session(engine, expire_on_commit=False) as s:
        user = get_user(session=s, name=name)
        assert user is not None and user.id is not None
        leased = lease_next_set(session=s, user_id=user.id, seed=0)
        assert leased is not None
        submit_leased(session=s, lease=leased.assignment, choices=choices)
        return leased.set.id or 0


@pytest.fixture
def store(tmp_path):
    engine = seeded_engine(tmp_path, sets=3)
    with Session(engine) as s:
        set_labels_needed(session=s, k=2)
        s.execute(update(Prompt).where(Prompt.id == 2).values(split="eval"))
        s.commit()
    disputed = _rank(
        engine, "alice", PageChoices([1, 2, 3, None], [None, None, None, "harmful"], comment="4 is rude")
    )
    assert _rank(engine, "bob", PageChoices([2, 1, 3, 4], [None] * 4)) == disputed
    return engine, disputed


def test_prompts_are_found_by_text_and_split(store):
    engine, _ = store
    with Session(engine) as s:
        every = find_prompts(session=s)
        assert len(every) == 3 and every[0].prompt_id > every[-1].prompt_id  # newest first
        assert [r.prompt_id for r in find_prompts(session=s, split="eval")] == [2]
        [hit] = find_prompts(session=s, query="PROMPT 1 ")
        assert hit.text.startswith("prompt 1") and hit.sets == 1 and hit.turns == 1
        assert find_prompts(session=s, query="no such words") == []
        with pytest.raises(ValueError, match="split must be one of all, train, eval"):
            find_prompts(session=s, split="test")


def test_ranked_sets_filter_by_labeler_version_flags_and_disagreement(store):
    engine, disputed = store
    with Session(engine) as s:
        [row] = find_ranked_sets(session=s)
        assert row.set_id == disputed and row.labelers == "alice, bob" and row.labels == 2 and row.flags == 1
        assert row.agreement is not None and row.agreement < 1
        assert [r.set_id for r in find_ranked_sets(session=s, labeler="bob", flagged_only=True)] == [disputed]
        assert [r.set_id for r in find_ranked_sets(session=s, disagreement_only=True)] == [disputed]
        assert find_ranked_sets(session=s, version=7) == []
        assert find_ranked_sets(session=s, labeler="admin") == []  # the admin ranked nothing
        with pytest.raises(ValueError, match="no labeler named 'carol'"):
            find_ranked_sets(session=s, labeler="carol")


def test_one_set_shows_every_label_the_consensus_and_its_pairs(store):
    engine, disputed = store
    with Session(engine) as s:
        d = set_detail(session=s, set_id=disputed)
        cset = s.get(CompletionSet, disputed)
        assert cset is not None
        answers = s.exec(select(Completion).where(Completion.set_id == disputed)).all()
    assert [n for n, _, _ in d.answers] == [1, 2, 3, 4] and d.version == 0 and d.origin == "generated"
    assert last_user_turn(d.messages).startswith("prompt")
    by_name = {x.labeler: x for x in d.labels}
    assert set(by_name) == {"alice", "bob"} and by_name["alice"].comment == "4 is rude"
    assert "harmful" in by_name["alice"].flags and by_name["bob"].flags == ""
    # the page's display order is shuffled per labeler; the stored orders are by completion, in answer numbers
    assert all(o.order.count(">") >= 2 for o in d.labels)
    assert d.consensus and {int(x) for x in d.consensus.replace("=", ">").split(">")} <= {1, 2, 3, 4}
    assert len(d.pairs) >= 3  # the pairs both orders agree on (the split one has no majority)
    assert len(answers) == 4
    with Session(engine) as s, pytest.raises(ValueError, match="no set 999 in the store"):
        set_detail(session=s, set_id=999)


def test_raw_agreement_counts_split_pairs():
    a, b = RankingView({1: 1, 2: 2, 3: 3}), RankingView({1: 2, 2: 1, 3: 3})
    assert raw_agreement([a, a]) == 1.0
    assert raw_agreement([a, b]) == pytest.approx((0.5 + 1 + 1) / 3, abs=1e-3)
    assert raw_agreement([a]) is None


def test_order_text_reads_ranks_in_answer_numbers():
    assert order_text({10: 2, 11: 1, 12: 2, 13: 3}, {10: 1, 11: 2, 12: 3, 13: 4}) == "2 > 1 = 3 > 4"


def test_the_ranked_set_list_reads_the_store_a_batch_at_a_time_newest_first(engine, monkeypatch):
    """Across batches (of 2 sets here), the list is what one pass over the store would give: newest first, the
    filters applied, stopped at the limit; the sets are read by id in chunks (of 3 here). Both databases."""
    import labeler.labels.browse as browse
    import labeler.labels.dataset as dataset
    from labeler.labels.stats import account_rows
    from labeler.records.policies import ensure_initial_policy
    from labeler.store.users import add_user
    from tests.labeler.helpers import make_sets

    with Session(engine) as s:
        add_user(session=s, name="alice", password="alice-password")
        add_user(session=s, name="bob", password="bob-password")
        make_sets(s, 7, n=4, version_id=ensure_initial_policy(session=s, base_model="tiny").id)
    ranked = [_rank(engine, "alice", PageChoices([1, 2, 3, 4], [None] * 4)) for _ in range(5)]
    flagged = _rank(engine, "alice", PageChoices([1, 2, 3, None], [None, None, None, "harmful"]))
    monkeypatch.setattr(browse, "SCAN_BATCH", 2)
    monkeypatch.setattr(dataset, "ID_CHUNK", 3)
    with Session(engine) as s:
        assert [r.set_id for r in find_ranked_sets(session=s)] == sorted([*ranked, flagged], reverse=True)
        assert [r.set_id for r in find_ranked_sets(session=s, limit=3)] == sorted([*ranked, flagged])[::-1][
            :3
        ]
        assert [r.set_id for r in find_ranked_sets(session=s, flagged_only=True)] == [flagged]
        assert [r.set_id for r in find_ranked_sets(session=s, labeler="bob")] == []
        assert len(find_ranked_sets(session=s, version=0)) == 6
        assert (
            find_ranked_sets(session=s, disagreement_only=True) == []
        )  # one labeler each: nothing to disagree on
        loaded = dataset.load_set_rankings(session=s, set_ids=[flagged, *ranked, 999])
        assert [x.set_id for x in loaded] == sorted([*ranked, flagged])
        assert all(len(x.texts) == 4 and len(x.rankings) == 1 for x in loaded)
        assert {r.name: r.rankings for r in account_rows(session=s)} == {
            "alice": 6,
            "bob": 0,
        }  # the Users tab
