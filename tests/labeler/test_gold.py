"""Gold sets: marking, mixing into the queue at the gold rate, scoring labelers, and staying out of training."""

import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, col, select

from app import main
from labeler.labels.dataset import load_set_rankings
from labeler.labels.gold import GoldAnswer, gold_comparisons, gold_scores, gold_sets, mark_gold, scores_from
from labeler.labels.pairs import PairSettings
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.settings import set_gold_rate
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import Assignment, Completion, CompletionSet, id_of
from rlhf.train.reward_data import load_groups
from tests.labeler.helpers import make_sets, make_user, make_version


def answer_ids(session: Session, set_id: int) -> list[int]:
    rows = session.exec(
        select(Completion).where(Completion.set_id == set_id).order_by(col(Completion.position))
    )
    return [id_of(c) for c in rows]


def rank(session: Session, user_id: int, leased, order: list[int], flags: dict | None = None) -> None:
    submit_ranking(
        session=session,
        ranking=RankingIn(
            set_id=id_of(leased.set),
            user_id=user_id,
            submission_id=uuid.uuid4().hex,
            ranks={c: k + 1 for k, c in enumerate(order)},
            flags=flags or {},
        ),
    )


def test_mark_copies_the_set_with_its_known_answer_and_checks_the_input(session):
    pv = make_version(session)
    [source] = make_sets(session, 1, version_id=pv.id)
    gold = mark_gold(session=session, set_id=id_of(source), ranks=[2, 1, 3, 4], flagged=[4])
    ids = answer_ids(session, id_of(gold))
    assert gold.origin == "gold" and gold.labels_needed == 0 and gold.prompt_id == source.prompt_id
    assert GoldAnswer.from_json(gold.gold) == GoldAnswer(
        {ids[0]: 2, ids[1]: 1, ids[2]: 3}, frozenset({ids[3]})
    )
    assert answer_ids(session, id_of(source)) != ids  # a copy: the original keeps its own answers and labels
    with pytest.raises(ValueError, match="gives 3 ranks for a set of 4 answers"):
        mark_gold(session=session, set_id=id_of(source), ranks=[1, 2, 3])
    with pytest.raises(ValueError, match="set 999 is not in the store"):
        mark_gold(session=session, set_id=999, ranks=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="is a gold set already"):
        mark_gold(session=session, set_id=id_of(gold), ranks=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="no rankings to take a consensus from"):
        mark_gold(session=session, set_id=id_of(source), from_consensus=True)


def test_gold_sets_mix_in_at_the_rate_never_twice_and_only_beside_real_work(session):
    pv = make_version(session)
    sources = make_sets(session, 6, version_id=pv.id)
    golds = [mark_gold(session=session, set_id=id_of(s), ranks=[1, 2, 3, 4]) for s in sources[:5]]
    make_sets(session, 40, version_id=pv.id)  # real work; each set lasts one label
    user = make_user(session, "alice")
    assert lease_next_set(session=session, user_id=id_of(user), seed=1).set.origin == "generated"  # rate 0
    session.exec(select(Assignment)).one().completed_at = None
    set_gold_rate(session=session, rate=0.5)
    with pytest.raises(ValueError, match=r"between 0 and 0\.5"):
        set_gold_rate(session=session, rate=0.9)
    origins = []
    for seed in range(2, 30):
        leased = lease_next_set(session=session, user_id=id_of(user), seed=seed)
        if leased is None:
            break
        origins.append(leased.set.origin)
        ids = [id_of(c) for c in leased.completions]
        rank(session, id_of(user), leased, ids)
    gold_ids = {id_of(g) for g in golds}
    had = [a.set_id for a in session.exec(select(Assignment).where(Assignment.user_id == id_of(user)))]
    assert sorted(a for a in had if a in gold_ids) == sorted(gold_ids)  # every gold set once, none twice
    assert origins.count("gold") == 5 and origins[:12].count("gold") >= 3  # about half while gold is left


def lease_gold(session: Session, user_id: int, version_id: int):
    """Lease until the gold rate gives a gold set, ranking the real sets met on the way (gold comes only beside
    real work, so one waits each time)."""
    for seed in range(60):
        make_sets(session, 1, version_id=version_id)
        leased = lease_next_set(session=session, user_id=user_id, seed=seed * 7919 + user_id)
        assert leased is not None
        if leased.set.origin == "gold":
            return leased
        rank(session, user_id, leased, [id_of(c) for c in leased.completions])
    raise AssertionError("no gold set in 60 leases at rate 0.5")


def test_scores_give_partial_credit_for_ties_and_count_flags(session):
    pv = make_version(session)
    [source] = make_sets(session, 1, version_id=pv.id)
    gold = mark_gold(session=session, set_id=id_of(source), ranks=[1, 2, 3, 4], flagged=[4])
    ids = answer_ids(session, id_of(gold))
    set_gold_rate(session=session, rate=0.5)
    people = {name: id_of(make_user(session, name)) for name in ("exact", "reversed", "tied")}
    for name, user_id in people.items():
        leased = lease_gold(session, user_id, id_of(pv))
        if name == "exact":
            rank(session, user_id, leased, ids[:3], flags={ids[3]: "harmful"})
        elif name == "reversed":
            rank(session, user_id, leased, [ids[2], ids[1], ids[0], ids[3]])
        else:
            ranks = {ids[0]: 1, ids[1]: 1, ids[2]: 2, ids[3]: 3}
            submit_ranking(session=session, ranking=RankingIn(set_id=id_of(gold), user_id=user_id, submission_id=uuid.uuid4().hex, ranks=ranks))  # fmt: skip
    scores = gold_scores(session=session)
    exact, rev, tied = (scores[people[n]] for n in ("exact", "reversed", "tied"))
    assert exact.mean_tau == 1.0 and exact.flags_caught == 1.0 and exact.sets == 1
    assert rev.mean_tau == -1.0 and rev.flags_caught == 0.0
    assert 0 < tied.mean_tau < 1  # one tie among the three known-different answers: partial credit
    comparisons = gold_comparisons(gold_sets(session=session))
    assert comparisons == {(id_of(gold), ids[0], ids[1]): True, (id_of(gold), ids[0], ids[2]): True, (id_of(gold), ids[1], ids[2]): True}  # fmt: skip
    # gold sets measure labelers: they give no reward-model training group (the real sets do)
    make_sets(session, 1, version_id=id_of(pv))
    set_gold_rate(session=session, rate=0.0)
    leased = lease_next_set(session=session, user_id=people["exact"])
    assert leased is not None
    rank(session, people["exact"], leased, [id_of(c) for c in leased.completions])
    groups = load_groups(session=session, settings=PairSettings())
    assert id_of(gold) not in {g.set_id for g in groups} and id_of(leased.set) in {g.set_id for g in groups}


def test_an_expired_gold_lease_still_counts(session):
    pv = make_version(session)
    [source] = make_sets(session, 1, version_id=pv.id)
    gold = mark_gold(session=session, set_id=id_of(source), ranks=[1, 2, 3, 4])
    set_gold_rate(session=session, rate=0.5)
    user_id = id_of(make_user(session, "bob"))
    leased = lease_gold(session, user_id, id_of(pv))
    leased.assignment.lease_expires_at -= timedelta(hours=1)
    session.add(leased.assignment)
    session.commit()
    rank(session, user_id, leased, answer_ids(session, id_of(gold)))
    sets = load_set_rankings(session=session, set_ids=[id_of(gold)])
    assert scores_from(sets, gold_sets(session=session))[user_id].mean_tau == 1.0


def test_gold_from_the_command_line(tmp_path, capsys):
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'rankloop.db'}"
    home.mkdir()
    with Session(make_engine(url)) as s:
        pv = make_version(s)
        [source] = make_sets(s, 1, version_id=pv.id)
        set_id = id_of(source)
    assert main(["gold", "mark", str(set_id), "--ranks", "2,1,-,3", "--home", str(home)]) == 0
    assert "a copy of set 1" in capsys.readouterr().out
    assert main(["gold", "rate", "0.2", "--home", str(home)]) == 0
    assert main(["gold", "scores", "--home", str(home)]) == 0
    with Session(make_engine(url)) as s:
        gold = s.exec(select(CompletionSet).where(CompletionSet.origin == "gold")).one()
        assert len(GoldAnswer.from_json(gold.gold).ranks) == 3
    assert main(["gold", "mark", str(set_id), "--ranks", "2,x,1,3", "--home", str(home)]) != 0
    assert "answer 2 has 'x'" in capsys.readouterr().err
