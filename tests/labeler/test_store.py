import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, col, func, select

from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import RankingIn, RankingRejected, submit_ranking
from labeler.store.tables import (
    Assignment,
    Completion,
    CompletionSet,
    PolicyVersion,
    Ranking,
    RewardModel,
    id_of,
    utcnow,
)
from tests.labeler.helpers import make_sets, make_user, make_version


def strict(leased, user_id, **kw):
    ranks = {id_of(c): i + 1 for i, c in enumerate(leased.completions)}
    return RankingIn(
        set_id=id_of(leased.set), user_id=user_id, submission_id=uuid.uuid4().hex, ranks=ranks, **kw
    )


def test_lease_shows_same_set_until_submitted_then_the_next(session):
    alice = make_user(session, "alice")
    make_sets(session, 2)
    first = lease_next_set(session=session, user_id=alice.id)
    again = lease_next_set(session=session, user_id=alice.id)
    assert again.set.id == first.set.id
    assert [c.id for c in again.completions] == first.assignment.display_order
    submit_ranking(session=session, ranking=strict(first, alice.id))
    second = lease_next_set(session=session, user_id=alice.id)
    assert second.set.id != first.set.id
    submit_ranking(session=session, ranking=strict(second, alice.id))
    assert lease_next_set(session=session, user_id=alice.id) is None


def test_overlap_k_and_started_sets_first(session):
    users = [make_user(session, n) for n in ("a", "b", "c")]
    make_sets(session, 2, labels_needed=2)
    la = lease_next_set(session=session, user_id=users[0].id)
    submit_ranking(session=session, ranking=strict(la, users[0].id))
    lb = lease_next_set(session=session, user_id=users[1].id)
    assert lb.set.id == la.set.id  # the started set is completed first
    submit_ranking(session=session, ranking=strict(lb, users[1].id))
    lc = lease_next_set(session=session, user_id=users[2].id)
    assert lc.set.id != la.set.id  # full sets are not offered again


def test_expired_lease_returns_set_to_pool(session):
    a, b = make_user(session, "a"), make_user(session, "b")
    make_sets(session, 1)
    leased = lease_next_set(session=session, user_id=a.id)
    assert lease_next_set(session=session, user_id=b.id) is None
    leased.assignment.lease_expires_at = utcnow() - timedelta(seconds=1)
    session.add(leased.assignment)
    session.commit()
    assert lease_next_set(session=session, user_id=b.id).set.id == leased.set.id


def test_current_version_sets_served_before_older(session):
    old = make_version(session, 0, current=False)
    new = make_version(session, 1, current=True)
    make_sets(session, 2, version_id=old.id)
    make_sets(session, 2, version_id=new.id)
    alice = make_user(session, "alice")
    assert lease_next_set(session=session, user_id=alice.id).set.policy_version_id == new.id


def test_validation_says_what_is_missing(session):
    alice = make_user(session, "alice")
    make_sets(session, 1)
    leased = lease_next_set(session=session, user_id=alice.id)
    ids = [c.id for c in leased.completions]
    base = {"set_id": leased.set.id, "user_id": alice.id, "submission_id": "x"}
    with pytest.raises(RankingRejected, match="rank at least two"):
        submit_ranking(
            session=session, ranking=RankingIn(**base, ranks={ids[0]: 1}, flags={ids[1]: "harmful"})
        )
    with pytest.raises(RankingRejected, match="both ranked and flagged"):
        submit_ranking(
            session=session,
            ranking=RankingIn(**base, ranks={ids[0]: 1, ids[1]: 2}, flags={ids[1]: "harmful"}),
        )
    with pytest.raises(RankingRejected, match="from 1 to 4"):
        submit_ranking(session=session, ranking=RankingIn(**base, ranks={ids[0]: 1, ids[1]: 9}))
    with pytest.raises(RankingRejected, match="unknown flag reason"):
        submit_ranking(
            session=session, ranking=RankingIn(**base, ranks={ids[0]: 1, ids[1]: 2}, flags={ids[2]: "ugly"})
        )
    with pytest.raises(RankingRejected, match="not in set"):
        submit_ranking(session=session, ranking=RankingIn(**base, ranks={ids[0]: 1, 99999: 2}))
    assert session.exec(select(func.count(col(Ranking.id)))).one() == 0
    ok = RankingIn(**base, none_acceptable=True, flags={i: "nonsensical" for i in ids})
    assert submit_ranking(session=session, ranking=ok).none_acceptable


def test_same_submission_twice_is_stored_once_and_conflicts_are_refused(session):
    alice = make_user(session, "alice")
    make_sets(session, 1)
    leased = lease_next_set(session=session, user_id=alice.id)
    ranking = strict(leased, alice.id)
    first = submit_ranking(session=session, ranking=ranking)
    again = submit_ranking(session=session, ranking=ranking)
    retry_new_id = submit_ranking(
        session=session, ranking=RankingIn(**{**ranking.__dict__, "submission_id": "other"})
    )
    assert first.id == again.id == retry_new_id.id
    different = strict(leased, alice.id)
    different.ranks = {k: 5 - v for k, v in different.ranks.items()}
    with pytest.raises(RankingRejected, match="already ranked"):
        submit_ranking(session=session, ranking=different)
    changed_same_id = RankingIn(**{**different.__dict__, "submission_id": ranking.submission_id})
    with pytest.raises(
        RankingRejected, match=r'already ranked by you with different choices.*"Undo last submit"'
    ):
        submit_ranking(
            session=session, ranking=changed_same_id
        )  # two tabs on one lease: refused, not "saved"
    with pytest.raises(RankingRejected, match="different choices"):
        submit_ranking(
            session=session, ranking=RankingIn(**{**ranking.__dict__, "comment": "on second thought"})
        )
    assert session.exec(select(func.count(col(Ranking.id)))).one() == 1
    stored = session.exec(select(Ranking)).one()
    assert stored.ranks == {str(k): v for k, v in ranking.ranks.items()}  # the first ranking, untouched


def test_skip_is_recorded_but_does_not_count_as_a_label(session):
    a, b = make_user(session, "a"), make_user(session, "b")
    make_sets(session, 1)
    leased = lease_next_set(session=session, user_id=a.id)
    submit_ranking(
        session=session,
        ranking=RankingIn(set_id=id_of(leased.set), user_id=a.id, submission_id="s", skipped=True),
    )
    assert lease_next_set(session=session, user_id=a.id) is None  # never shown twice
    assert lease_next_set(session=session, user_id=b.id).set.id == leased.set.id


def test_unassigned_submission_refused(session):
    a = make_user(session, "a")
    [cset] = make_sets(session, 1)
    with pytest.raises(RankingRejected, match="never assigned"):
        submit_ranking(
            session=session,
            ranking=RankingIn(set_id=cset.id, user_id=a.id, submission_id="z", none_acceptable=True),
        )


def test_concurrent_leasing_never_repeats_a_set_nor_overfills_nor_loses_a_ranking(store_url):
    """16 labelers lease and submit at once (each its own connection), with a double click on every submit:
    no set gets more than its k labels, no labeler sees a set twice, every ranking is stored once."""
    engine = make_engine(store_url)
    with Session(engine) as s:
        users = [make_user(s, f"u{i}").id for i in range(16)]
        make_sets(s, 40, labels_needed=3)
    seen: dict[int, list[int]] = {u: [] for u in users}
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def work(user_id: int) -> None:
        try:
            start.wait()
            with Session(engine) as s:
                while (leased := lease_next_set(session=s, user_id=user_id)) is not None:
                    seen[user_id].append(id_of(leased.set))
                    ranking = strict(leased, user_id)
                    submit_ranking(session=s, ranking=ranking)
                    submit_ranking(session=s, ranking=ranking)  # a double click
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for sets in seen.values():
        assert len(sets) == len(set(sets))
    with Session(engine) as s:
        rankings = s.exec(select(Ranking)).all()
        assert len(rankings) == 120 == sum(len(v) for v in seen.values())
        per_set = s.exec(select(Ranking.set_id, func.count(col(Ranking.id))).group_by(Ranking.set_id)).all()
        assert all(count == 3 for _, count in per_set) and len(per_set) == 40
        assert all(a.completed_at is not None for a in s.exec(select(Assignment)))
        assert {c.labels_done for c in s.exec(select(CompletionSet))} == {3}  # counted once per ranking
    engine.dispose()


def label_counts(session: Session) -> dict[int, tuple[int, int]]:
    """Per set: (the stored count, the non-skip rankings actually there)."""
    counted = {id_of(c): c.labels_done for c in session.exec(select(CompletionSet))}
    actual = dict(
        session.exec(
            select(Ranking.set_id, func.count(col(Ranking.id)))
            .where(col(Ranking.skipped).is_(False))
            .group_by(col(Ranking.set_id))
        ).all()
    )
    return {i: (n, actual.get(i, 0)) for i, n in counted.items()}


def test_labels_are_counted_once_each_skips_repeats_and_refusals_not_at_all(session):
    a, b, c = (make_user(session, name) for name in "abc")
    make_sets(session, 2, labels_needed=2)
    first = lease_next_set(session=session, user_id=a.id)
    ranking = strict(first, a.id)
    submit_ranking(session=session, ranking=ranking)
    submit_ranking(session=session, ranking=ranking)  # a repeat: stored once, counted once
    with pytest.raises(RankingRejected):
        submit_ranking(
            session=session, ranking=RankingIn(set_id=first.set.id, user_id=c.id, submission_id="x")
        )
    skipped = lease_next_set(session=session, user_id=b.id)
    submit_ranking(
        session=session,
        ranking=RankingIn(set_id=skipped.set.id, user_id=b.id, submission_id="s", skipped=True),
    )
    none_ok = lease_next_set(session=session, user_id=b.id)
    submit_ranking(
        session=session,
        ranking=RankingIn(set_id=none_ok.set.id, user_id=b.id, submission_id="n", none_acceptable=True),
    )
    counts = label_counts(session)
    assert all(stored == actual for stored, actual in counts.values()), counts
    assert sorted(stored for stored, _ in counts.values()) == [1, 1]


def test_an_older_store_gets_its_label_counts_and_loses_the_retired_index(store_url):
    """A store made before migrations and before sets counted their labels (SQLite and PostgreSQL): Alembic's
    first revision adds the column, fills it from the rankings and drops the old index, and leasing goes on from
    the right counts; a store made today is left as it is."""
    url = store_url
    engine = make_engine(url)
    with Session(engine) as s:
        a, b = make_user(s, "a"), make_user(s, "b")
        make_version(s)
        make_sets(s, 3, labels_needed=2, version_id=1)
        for user in (a, b):
            leased = lease_next_set(session=s, user_id=user.id)
            submit_ranking(session=s, ranking=strict(leased, user.id))
        a_id = a.id
    with engine.begin() as conn:  # back to the old schema, from before migrations
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP INDEX ix_set_waiting"))
        conn.execute(text("ALTER TABLE completionset DROP COLUMN labels_done"))
        conn.execute(text("CREATE INDEX ix_set_open ON completionset (origin, policy_version_id)"))
    engine.dispose()
    engine = make_engine(url)
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("completionset")}
    assert "ix_set_open" not in indexes and "ix_set_waiting" in indexes
    with Session(engine) as s:
        assert sorted(stored for stored, actual in label_counts(s).values() if stored == actual) == [0, 0, 2]
        # a's next set: one of the two without labels (a had the full one)
        leased = lease_next_set(session=s, user_id=a_id)
        assert leased is not None and leased.set.labels_done == 0
    assert revision(engine) == HEAD
    engine.dispose()
    again = make_engine(url)  # made today: already at the newest revision, nothing to do
    assert revision(again) == HEAD and "ix_set_waiting" in {
        ix["name"] for ix in inspect(again).get_indexes("completionset")
    }
    again.dispose()


HEAD = "0007"


def test_a_store_at_the_first_revision_gets_its_records_columns_filled_from_their_figures(store_url):
    """Revision 0002 on a store made at 0001 (SQLite and PostgreSQL): reward models and policy versions get the
    columns readers ask for, filled from the figures their stages recorded (a model without held-out sets has
    no accuracy; a version's KL is its budget fit's, else PPO's)."""
    engine = make_engine(store_url)
    reward = {"accuracy": 0.71, "pairs": 42, "heldout_sets": 7, "heads": 4, "information": True, "continued_from": "r1"}  # fmt: skip
    with Session(engine) as s:
        v0 = make_version(s)
        s.add(RewardModel(name="r1", base_model="m", metrics={"accuracy": 0.9, "heldout_sets": 0}))
        s.add(RewardModel(name="r2", base_model="m", metrics=reward))
        fit = {"budget": 4.0, "kl": 3.5, "scale": 0.8, "within": True}
        dpo = {"final": {"heldout_accuracy": 0.66, "heldout_sets": 9}, "kl_budget": fit, "gate": {"decision": "pass"}}  # fmt: skip
        s.add(PolicyVersion(version=1, base_model="m", parent_id=v0.id, metrics=dpo))
        s.add(
            PolicyVersion(
                version=2, base_model="m", metrics={"final": {"kl": 6.25}, "gate": {"decision": "fail"}}
            )
        )
        s.commit()
    columns = {"rewardmodel": ["accuracy", "heldout_pairs", "heldout_sets", "heads", "ensemble", "information", "continued_from"], "policyversion": ["kl", "heldout_accuracy", "gate_decision"]}  # fmt: skip
    with engine.begin() as conn:  # back to revision 0001
        for table, names in columns.items():
            for name in names:
                conn.execute(text(f'ALTER TABLE {table} DROP COLUMN "{name}"'))
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    engine = make_engine(store_url)
    assert revision(engine) == HEAD
    with Session(engine) as s:
        r1, r2 = (s.exec(select(RewardModel).where(RewardModel.name == n)).one() for n in ("r1", "r2"))
        assert (r1.accuracy, r1.heldout_sets, r1.heads, r1.information) == (None, 0, 1, False)
        assert (r2.accuracy, r2.heldout_pairs, r2.heldout_sets, r2.heads, r2.ensemble) == (0.71, 42, 7, 4, 1)
        assert r2.information and r2.continued_from == "r1"
        v1, v2 = (s.exec(select(PolicyVersion).where(PolicyVersion.version == k)).one() for k in (1, 2))
        assert (v1.kl, v1.heldout_accuracy, v1.gate_decision) == (3.5, 0.66, "pass")
        assert (v2.kl, v2.heldout_accuracy, v2.gate_decision) == (6.25, None, "fail")
    engine.dispose()


def test_a_store_at_revision_0002_gets_the_completions_origins(store_url):
    """Revision 0003 on a store made at 0002 (SQLite and PostgreSQL), by Alembic's own downgrade and upgrade:
    completions get who wrote them (`generated` for every existing one) and an edit's author and source."""
    from alembic import command
    from alembic.config import Config

    from labeler.store.db import MIGRATIONS

    engine = make_engine(store_url)
    with Session(engine) as s:
        make_sets(s, 1)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", store_url.replace("%", "%%"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert "origin" not in {c["name"] for c in inspect(engine).get_columns("completion")}
    engine.dispose()
    engine = make_engine(store_url)
    assert revision(engine) == HEAD
    with Session(engine) as s:
        rows = s.exec(select(Completion)).all()
        assert len(rows) == 4 and {(c.origin, c.author_id, c.source_id) for c in rows} == {
            ("generated", None, None)
        }
    engine.dispose()


def revision(engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
