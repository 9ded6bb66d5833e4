import pytest

from labeler.labels.consensus import (
    agreement,
    consensus_order,
    kendall_tau_b,
    krippendorff_alpha_ordinal,
    pair_votes,
    ranked_pairs_order,
)
from labeler.labels.pairs import PairSettings, RankingView


def r(ranks, who, **kw):
    return RankingView(ranks=ranks, labeler=who, **kw)


def test_majority_with_vote_counts_and_agreement_filter():
    rankings = [r({1: 1, 2: 2}, "a"), r({1: 1, 2: 2}, "b"), r({1: 2, 2: 1}, "c")]
    [pair] = pair_votes(rankings)
    assert (pair.chosen, pair.rejected, pair.votes_for, pair.votes_against) == (1, 2, 2, 1)
    assert pair.agreement == pytest.approx(2 / 3)
    assert pair_votes(rankings, PairSettings(min_agreement=0.7)) == []


def test_even_split_gives_no_pair():
    assert pair_votes([r({1: 1, 2: 2}, "a"), r({1: 2, 2: 1}, "b")]) == []


def test_ranked_pairs_breaks_a_condorcet_cycle_by_strength():
    # 1>2 (3 votes), 2>3 (2 votes), 3>1 (1 vote) -> the weakest edge 3>1 is skipped: order 1, 2, 3
    rankings = [r({1: 1, 2: 2, 3: 3}, "a"), r({1: 1, 2: 2, 3: 3}, "b"), r({3: 1, 1: 2, 2: 3}, "c")]
    assert consensus_order(rankings) == {1: 1, 2: 2, 3: 3}
    assert ranked_pairs_order([1, 2], []) == {1: 1, 2: 1}


def test_kendall_tau_b_known_values():
    assert kendall_tau_b({1: 1, 2: 2, 3: 3}, {1: 1, 2: 2, 3: 3}) == 1.0
    assert kendall_tau_b({1: 1, 2: 2, 3: 3}, {1: 3, 2: 2, 3: 1}) == -1.0
    assert kendall_tau_b({1: 1, 2: 2, 3: 3}, {1: 1, 2: 3, 3: 2}) == pytest.approx(1 / 3)
    assert kendall_tau_b({1: 1}, {1: 1}) is None


def test_krippendorff_alpha_perfect_reversed_and_textbook():
    assert krippendorff_alpha_ordinal([[1, 1], [2, 2], [3, 3], [4, 4]]) == pytest.approx(1.0)
    assert krippendorff_alpha_ordinal([[1, 4], [2, 3], [3, 2], [4, 1]]) < 0
    assert krippendorff_alpha_ordinal([[1, 1], [1, 1]]) is None
    # Krippendorff (2011), reliability data with missing values, ordinal metric: alpha = 0.815
    data = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4], [4, 4, 4, 4],
            [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]  # fmt: skip
    assert krippendorff_alpha_ordinal(data) == pytest.approx(0.815, abs=0.001)


def test_agreement_perfect_and_per_labeler_tau():
    same = [
        [r({1: 1, 2: 2, 3: 3}, "a"), r({1: 1, 2: 2, 3: 3}, "b")],
        [r({4: 2, 5: 1, 6: 3}, "a"), r({4: 2, 5: 1, 6: 3}, "b")],
    ]
    result = agreement(same)
    assert result.alpha == pytest.approx(1.0) and result.sets == 2
    assert result.per_labeler_tau == {"a": 1.0, "b": 1.0}
    contrarian = [[r({1: 1, 2: 2, 3: 3}, "a"), r({1: 1, 2: 2, 3: 3}, "b"), r({1: 3, 2: 2, 3: 1}, "c")]]
    taus = agreement(contrarian).per_labeler_tau
    assert taus["a"] == 1.0 and taus["c"] == -1.0
    single = agreement([[r({1: 1, 2: 2}, "a")]])
    assert single.sets == 0 and single.alpha is None
