"""Labeler quality on the dashboard: gold scores, reliability, leave-one-out agreement, speed; the adversary is
listed for review, not dropped."""

import uuid
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from labeler.labels.dataset import load_set_rankings
from labeler.labels.gold import mark_gold
from labeler.labels.quality import labeler_quality, leave_one_out_tau, weekly_trend
from labeler.store.db import make_engine
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import Assignment, Completion, Ranking, User, id_of, utcnow
from labeler.ui.admin_dashboard import LABELER_COLUMNS, WEEK_COLUMNS, dashboard_data
from tests.rlhf.synthetic import LABELERS_WITH_ADVERSARY, add_ranked_sets, synthetic_store


def test_the_adversary_is_found_by_reliability_gold_and_agreement(tmp_path):
    url, _ = synthetic_store(tmp_path, sets=0)
    # three honest labelers and an adversary (with two others, an honest labeler's leave-one-out consensus
    # would be a draw between the other honest one and the adversary)
    add_ranked_sets(url, 30, labelers=(*LABELERS_WITH_ADVERSARY, ("honest-c", False)))
    engine = make_engine(url)
    with Session(engine) as s:
        gold = mark_gold(session=s, set_id=1, from_consensus=True)
        answers = list(s.exec(select(Completion).where(Completion.set_id == gold.id)))
        best_first = sorted(answers, key=lambda c: -c.text.count(" good"))
        for user in list(s.exec(select(User))):  # each was given the gold set (as the gold rate would)
            s.add(Assignment(set_id=id_of(gold), user_id=id_of(user), display_order=[id_of(c) for c in answers], lease_expires_at=utcnow() + timedelta(minutes=15), token=uuid.uuid4().hex))  # fmt: skip
            s.commit()
            order = best_first[::-1] if user.name == "adversary" else best_first
            ranks = {id_of(c): k + 1 for k, c in enumerate(order)}
            submit_ranking(session=s, ranking=RankingIn(set_id=id_of(gold), user_id=id_of(user), submission_id=uuid.uuid4().hex, ranks=ranks))  # fmt: skip
        rows = {q.row.name: q for q in labeler_quality(session=s)}
        summary, table, _, _, weeks, *_ = dashboard_data(s)
        # half of honest-a's rankings a week earlier: two rows for honest-a, newest week first
        theirs = s.exec(
            select(Ranking).join(User, col(User.id) == Ranking.user_id).where(User.name == "honest-a")
        ).all()
        earlier = [id_of(r) for r in theirs[:15]]
        s.execute(
            update(Ranking)
            .where(col(Ranking.id).in_(earlier))
            .values(created_at=utcnow() - timedelta(days=7))
        )
        s.commit()
        split = [
            w for w in weekly_trend(session=s, sets=load_set_rankings(session=s)) if w.labeler == "honest-a"
        ]
    adversary, honest = rows["adversary"], rows["honest-a"]
    assert adversary.reliability < 0.2 < 0.8 < honest.reliability
    assert adversary.gold.mean_tau == -1.0 and honest.gold.mean_tau == 1.0
    assert adversary.loo_tau < 0 < honest.loo_tau and honest.loo_sets == 30
    assert adversary.concerns and not honest.concerns
    assert "Labelers to review" in summary and "adversary (reliability" in summary
    by_name = {r[0]: dict(zip(LABELER_COLUMNS, r, strict=True)) for r in table}
    assert by_name["adversary"]["gold tau"] == -1.0 and by_name["honest-b"]["review"] == ""
    assert by_name["honest-a"]["rankings"] == 31  # 30 sets and the gold one
    this_week = {r[1]: dict(zip(WEEK_COLUMNS, r, strict=True)) for r in weeks}
    assert len(weeks) == 5 and len({r[0] for r in weeks}) == 1  # five labelers, all this week
    assert (
        this_week["honest-a"]["submissions (rankings and skips)"] == 31
        and this_week["honest-a"]["sets in tau"] == 30
    )  # gold aside
    assert this_week["adversary"]["tau vs others"] < 0 < this_week["honest-c"]["tau vs others"]
    assert [w.rankings for w in split] == [16, 15] and split[0].week > split[1].week


def test_leave_one_out_needs_two_labelers(tmp_path):
    url, _ = synthetic_store(tmp_path, sets=3)
    with Session(make_engine(url)) as s:
        assert leave_one_out_tau(load_set_rankings(session=s)) == {}


def test_a_labelers_own_page_shows_their_agreement_and_median_time(tmp_path):
    from labeler.labels.quality import own_agreement
    from labeler.ui.labeling import OwnFigures, progress_text

    url, _ = synthetic_store(tmp_path, sets=0)
    add_ranked_sets(url, 12, labelers=(*LABELERS_WITH_ADVERSARY, ("honest-c", False)))
    engine = make_engine(url)
    with Session(engine) as s:
        ids = {u.name: id_of(u) for u in s.exec(select(User))}
        s.execute(update(Ranking).where(Ranking.user_id == ids["honest-a"]).values(seconds_spent=20.0))
        s.execute(
            update(Ranking)
            .where(col(Ranking.id).in_(select(Ranking.id).where(Ranking.user_id == ids["honest-a"]).limit(3)))
            .values(seconds_spent=50.0)
        )
        s.commit()
        adversary = own_agreement(session=s, user_id=ids["adversary"])
        honest = own_agreement(session=s, user_id=ids["honest-a"])
    assert adversary.mean_tau is not None and honest.mean_tau is not None
    assert adversary.mean_tau < 0 < honest.mean_tau and honest.sets == 12
    line = progress_text(engine, ids["honest-a"], OwnFigures())
    assert line.startswith("**Today:** 12 · median 20 s per set · **Agreement with others:** +")
    assert "(tau, 12 shared sets)" in line and "**Total:** 12" in line


def test_agreement_waits_for_overlap(tmp_path):
    from labeler.labels.quality import own_agreement
    from labeler.ui.labeling import OwnFigures, progress_text

    url, _ = synthetic_store(tmp_path, sets=3)
    engine = make_engine(url)
    with Session(engine) as s:
        user_id = s.exec(select(Ranking.user_id)).first()
        assert user_id is not None
        assert own_agreement(session=s, user_id=user_id).mean_tau is None
    assert "Agreement" not in progress_text(engine, user_id, OwnFigures())
