"""What rounds' labels cost and bought: new labels per round, server-measured human minutes, the reward model's
held-out accuracy gain, the human win-rate of the new version over its parent, labels per point of each, and the
dashboard's rounds table."""

import uuid

import pytest
from sqlalchemy import update
from sqlmodel import Session, col

from labeler.io.export import export_preferences
from labeler.labels.costs import round_costs
from labeler.records.policies import VersionFacts
from labeler.records.reward_models import RewardFacts, register_reward_model
from labeler.records.rounds import RoundLabels, RoundLineage, record_round
from labeler.store.leasing import lease_next_set
from labeler.store.store import CompletionIn, RankingIn, add_completion_set, get_or_add_prompt, submit_ranking
from labeler.store.tables import PolicyVersion, Ranking, id_of
from labeler.ui.admin_dashboard import ROUND_COLUMNS, ROUND_PANELS, dashboard_data
from tests.labeler.helpers import make_sets, make_user, make_version


def rank_next(
    session: Session, user_id: int, seconds: float, best_first: list[int | None] | None = None
) -> int:
    """Lease the next set and rank it (by position, or `best_first` policy version ids first); its time is set
    to `seconds`, as if the labeler had taken that long. Returns the ranking's id."""
    leased = lease_next_set(session=session, user_id=user_id)
    assert leased is not None
    answers = leased.completions
    if best_first:
        answers = sorted(answers, key=lambda c: best_first.index(c.policy_version_id))
    ranking = submit_ranking(
        session=session,
        ranking=RankingIn(
            set_id=id_of(leased.set),
            user_id=user_id,
            submission_id=uuid.uuid4().hex,
            ranks={id_of(c): k + 1 for k, c in enumerate(answers)},
        ),
    )
    session.execute(update(Ranking).where(col(Ranking.id) == ranking.id).values(seconds_spent=seconds))
    session.commit()
    return id_of(ranking)


def recorded(version: PolicyVersion, metrics: dict) -> None:
    """`metrics` on `version` with the columns its registration fills from them."""
    facts = VersionFacts.from_metrics(metrics)
    version.metrics, version.kl, version.heldout_accuracy = metrics, facts.kl, facts.heldout_accuracy


def model(session: Session, name: str, accuracy: float, heldout: int = 6) -> int:
    facts = RewardFacts(
        accuracy=accuracy if heldout else None, heldout_pairs=6 * heldout, heldout_sets=heldout
    )
    ref = register_reward_model(session=session, name=name, base_model="tiny", adapter_path=f"/models/{name}", snapshot_path=None, facts=facts, metrics={"accuracy": accuracy, "heldout_sets": heldout}, job_id=None)  # fmt: skip
    return ref.id


def test_round_costs_count_new_labels_minutes_and_what_they_bought(session, tmp_path):
    alice = make_user(session, "alice")
    v0, v1, v2 = (make_version(session, k, current=k == 0) for k in range(3))
    recorded(v1, {"final": {"kl": 3.5, "reward": 0.2}})  # as PPO records it; v2 came from DPO: no KL
    session.add(v1)
    session.commit()
    make_sets(session, 2, version_id=v0.id)
    first = [rank_next(session, alice.id, 60.0), rank_next(session, alice.id, 120.0)]
    record_round(session=session, lineage=RoundLineage("ppo", v0.id, v1.id, RoundLabels(first, []), model(session, "r1", 0.60)))  # fmt: skip
    prompt = get_or_add_prompt(session=session, messages=[{"role": "user", "content": "human evaluation"}])
    mixed = [CompletionIn("new a", policy_version_id=v1.id), CompletionIn("new b", policy_version_id=v1.id)]
    mixed += [CompletionIn("old a", policy_version_id=v0.id), CompletionIn("old b", policy_version_id=v0.id)]
    add_completion_set(session=session, prompt_id=id_of(prompt), completions=mixed, policy_version_id=v1.id)
    third = rank_next(session, alice.id, 30.0, best_first=[v1.id, v0.id])  # v1's answers above v0's
    record_round(session=session, lineage=RoundLineage("ppo", v1.id, v2.id, RoundLabels([*first, third], []), model(session, "r2", 0.70)))  # fmt: skip

    one, two = round_costs(session=session)
    assert (one.version, one.new_labels, one.human_minutes, one.reward_model) == (1, 2, 3.0, "r1")
    assert one.reward_accuracy == 0.60 and one.accuracy_gain is None and one.labels_per_accuracy_point is None
    assert one.win_rate == 1.0 and one.comparisons == 4  # 2 x 2 cross-version pairs, v1 above v0 in each
    assert one.win_rate_interval is not None and one.win_rate_interval[0] > 0.4
    assert one.labels_per_win_point == pytest.approx(2 / 50)
    assert (two.version, two.new_labels, two.human_minutes) == (2, 1, 0.5)
    assert two.accuracy_gain == pytest.approx(10.0) and two.labels_per_accuracy_point == pytest.approx(0.1)
    assert two.win_rate is None and two.labels_per_win_point is None  # no set mixes v2 with v1

    assert one.kl == 3.5 and two.kl is None

    data = dashboard_data(session)
    rounds, panels = data[3], data[5:]
    assert [r[1] for r in rounds] == ["v2", "v1"] and len(rounds[0]) == len(ROUND_COLUMNS)  # newest first
    assert rounds[1][2:4] == [2, 3.0] and rounds[1][-1] == 3.5
    # one plot per ROUND_PANELS entry, numeric axes, one point per round that has the figure
    assert len(panels) == len(ROUND_PANELS) and all(p["value"].dtype == "float64" for p in panels)
    accuracy, kl, wins, minutes = (p.values.tolist() for p in panels)
    assert accuracy == [[one.round_id, 0.6, "held-out accuracy"], [two.round_id, 0.7, "held-out accuracy"]]
    assert kl == [[one.round_id, 3.5, "KL"]] and [w[2] for w in wins] == ["win-rate", "95% low", "95% high"]
    assert [m[1] for m in minutes] == [3.0, 0.5]
    export_preferences(session=session, out=tmp_path, fmt="jsonl")
    card = (tmp_path / "README.md").read_text()
    assert "## What the labels cost and bought, per training round" in card
    assert "| 1 | 1 | 2 | 3 | 0.6 | n/a | 1 | 0.04 |" in card


def test_a_reward_model_without_held_out_sets_reports_no_accuracy(session):
    v0, v1 = make_version(session, 0), make_version(session, 1, current=False)
    record_round(session=session, lineage=RoundLineage("ppo", v0.id, v1.id, RoundLabels([], []), model(session, "r1", 0.4, heldout=0)))  # fmt: skip
    [only] = round_costs(session=session)
    assert only.reward_accuracy is None and only.new_labels == 0 and only.human_minutes == 0.0


def test_a_dpo_round_reports_its_implicit_rewards_held_out_accuracy_and_its_kl_budget(session):
    v0, v1, v2 = (make_version(session, k, current=k == 0) for k in range(3))
    recorded(
        v1, {"final": {"loss": 0.5, "heldout_accuracy": 0.65, "heldout_sets": 6}}
    )  # DPO without a budget
    fit = {"budget": 4.0, "kl_before": 5.2, "kl": 3.8, "scale": 0.86, "within": True}
    recorded(v2, {"final": {"heldout_accuracy": 0.7, "heldout_sets": 0}, "kl_budget": fit})
    session.add_all([v1, v2])
    session.commit()
    record_round(session=session, lineage=RoundLineage("dpo", v0.id, v1.id, RoundLabels([], []), None))
    record_round(session=session, lineage=RoundLineage("dpo", v1.id, v2.id, RoundLabels([], []), None))
    one, two = round_costs(session=session)
    assert one.reward_model is None and one.reward_accuracy == 0.65 and one.kl is None
    assert two.reward_accuracy is None and two.kl == 3.8  # no held-out sets: no accuracy; KL as budgeted
