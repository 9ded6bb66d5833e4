import pytest

from labeler.labels.pairs import RankingView
from labeler.labels.winrate import wilson_interval, win_rate_from

VERSIONS = {1: 2, 2: 2, 3: 1, 4: 1}  # completions 1-2 from v2 (new), 3-4 from v1 (old)


def test_win_rate_counts_cross_version_pairs_only():
    ranking = RankingView(ranks={1: 1, 3: 2, 2: 3, 4: 4})
    result = win_rate_from([(ranking, VERSIONS)], new_id=2, old_id=1)
    # new 1 beats 3 and 4; new 2 loses to 3, beats 4
    assert (result.wins, result.losses, result.ties) == (3, 1, 0) and result.rate == 0.75


def test_ties_count_half_and_flags_lose():
    ranking = RankingView(ranks={1: 1, 3: 1}, flagged=frozenset({2, 4}))
    result = win_rate_from([(ranking, VERSIONS)], new_id=2, old_id=1)
    # 1 vs 3 tie; 1 beats flagged 4; flagged 2 loses to 3; 2 vs 4 both flagged: tie
    assert (result.wins, result.losses, result.ties) == (1, 1, 2) and result.rate == 0.5


def test_wilson_interval_known_value():
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert win_rate_from([], 2, 1).rate is None
