"""The reward-hacking review list: which answers labelers rejected (torch-free), and, after reward training on
the tiny model, the answers the new model still ranks first although a labeler flagged them or ranked them last."""

from __future__ import annotations

import uuid

from sqlmodel import Session, col, select

from labeler.labels.hacking import ComplaintSet, complaints_in, hacking_suspects
from labeler.labels.pairs import RankingView
from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import CompletionSet, RewardModel, id_of
from labeler.store.users import add_user
from rlhf.train import reward
from rlhf.train.configs import RewardConfig
from tests.rlhf.synthetic import synthetic_store


def test_complaints_are_flags_and_last_places_not_all_tied_rankings():
    views = [
        RankingView({1: 1, 2: 2, 3: 3}, frozenset({2})),
        RankingView({1: 2, 2: 1, 3: 2}),  # 1 and 3 tie for last
        RankingView({1: 1, 2: 1, 3: 1}),  # all tied: says nothing about last
        RankingView({1: 1, 2: 2, 3: 3}, skipped=True),
    ]
    assert complaints_in(views, [1, 2, 3]) == {
        2: ["flagged"],
        3: ["ranked last", "ranked last"],
        1: ["ranked last"],
    }


def test_suspects_are_rejected_answers_the_model_puts_strictly_first():
    sets = [
        ComplaintSet(
            1, [{"role": "user", "content": "p1"}], [10, 11], ["a", "b"], {10: ["flagged", "ranked last"]}
        ),
        ComplaintSet(2, [{"role": "user", "content": "p2"}], [20, 21], ["c", "d"], {20: ["ranked last"]}),
        ComplaintSet(3, [{"role": "user", "content": "p3"}], [30, 31], ["e", "f"], {31: ["flagged"]}),
    ]
    found = hacking_suspects(sets, [[2.0, 0.5], [1.0, 1.0], [3.0, 0.0]])
    assert [(s.completion_id, s.why, s.margin) for s in found] == [
        (10, "flagged by 1, ranked last by 1", 1.5)
    ]


def test_reward_training_lists_rejected_answers_it_scores_first(tmp_path):
    url, checkpoint = synthetic_store(tmp_path, sets=40)
    engine = make_engine(url)
    with Session(engine) as s:  # three sets get a second label: a contrarian who rejects the best answer
        chosen = s.exec(select(CompletionSet).order_by(col(CompletionSet.id)).limit(3)).all()
        for cset in chosen:
            cset.labels_needed = 2
            s.add(cset)
        s.commit()
        contrarian = id_of(add_user(session=s, name="contra", password="contra-password"))
        rejected = []
        while (leased := lease_next_set(session=s, user_id=contrarian)) is not None:
            order = sorted(leased.completions, key=lambda c: c.text.count(" good"))  # worst first
            best = order[-1]
            rejected.append(id_of(best))
            flag = len(rejected) == 3  # the last one flagged (a flagged answer has no rank), the others last
            submit_ranking(
                session=s,
                ranking=RankingIn(
                    set_id=id_of(leased.set),
                    user_id=contrarian,
                    submission_id=uuid.uuid4().hex,
                    ranks={id_of(c): k + 1 for k, c in enumerate(order) if not (flag and c is best)},
                    flags={id_of(best): "harmful"} if flag else {},
                ),
            )
    assert len(rejected) == 3
    config = RewardConfig(home=str(tmp_path), db=url, model=checkpoint, epochs=2, learning_rate=3e-3, max_length=64, device="cpu")  # fmt: skip
    result = reward.run(config)
    with Session(engine) as s:
        review = s.exec(select(RewardModel)).one().metrics["review"]
    assert result.metrics["accuracy"] > 0.8  # it learned the labelers' rule
    assert review["sets_checked"] >= 3 and review["suspects"] == len(review["items"])
    flagged = {i["completion_id"]: i["why"] for i in review["items"]}
    assert len(set(rejected) & set(flagged)) >= 2, (rejected, review)
    assert {flagged[c] for c in set(rejected) & set(flagged)} <= {"ranked last by 1", "flagged by 1"}


def test_the_training_tab_lists_the_newest_models_suspects(engine):
    from labeler.records.reward_models import RewardFacts, register_reward_model
    from labeler.ui.admin_training import review_frame, rewards_frame

    item = {"set_id": 4, "completion_id": 9, "prompt": "p", "text": "t", "score": 2.0, "margin": 1.25, "why": "flagged by 1"}  # fmt: skip
    with Session(engine) as s:
        for name, items in (("r1", []), ("r2", [item])):
            review = {"sets_checked": 3, "suspects": len(items), "items": items}
            register_reward_model(session=s, name=name, base_model="m", adapter_path="a", snapshot_path=None, facts=RewardFacts(), metrics={"review": review}, job_id=None)  # fmt: skip
        assert review_frame(s).values.tolist() == [["r2", 4, "p", "t", "flagged by 1", 1.25]]
        assert rewards_frame(s)["hacking suspects"].tolist() == [
            1,
            0,
        ]  # counts per reward model, newest first


def test_the_review_follows_the_models_a_reward_model_continued(engine):
    from labeler.records.reward_models import RewardFacts, register_reward_model
    from labeler.ui.admin_training import review_frame

    def item(set_id: int) -> dict:
        return {"set_id": set_id, "completion_id": set_id, "prompt": "p", "text": "t", "score": 1.0, "margin": 0.5, "why": "ranked last by 1"}  # fmt: skip

    with Session(engine) as s:
        for name, parent, set_id in (("r1", None, 1), ("r2", None, 2), ("r3", "r2", 3)):
            metrics = {"review": {"sets_checked": 1, "suspects": 1, "items": [item(set_id)]}}
            facts = RewardFacts(continued_from=parent)
            register_reward_model(session=s, name=name, base_model="m", adapter_path="a", snapshot_path=None, facts=facts, metrics=metrics, job_id=None)  # fmt: skip
        # r3 reviewed only the sets it met first; r2 (a new model) reviewed the rest; r1 is superseded by r2
        assert [row[:2] for row in review_frame(s).values.tolist()] == [["r3", 3], ["r2", 2]]
