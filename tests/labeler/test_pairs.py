from labeler.labels.pairs import IdPair, PairSettings, RankingView, ranking_to_pairs


def test_four_way_strict_ranking_gives_six_pairs_with_rank_margins():
    pairs = ranking_to_pairs(RankingView(ranks={10: 2, 11: 1, 12: 4, 13: 3}))
    assert len(pairs) == 6
    assert IdPair(11, 10, 1.0) in pairs
    assert IdPair(11, 12, 3.0) in pairs
    assert IdPair(13, 12, 1.0) in pairs
    assert all(p.margin > 0 for p in pairs)


def test_ties_give_no_pair_by_default_and_margin_zero_when_kept():
    ranking = RankingView(ranks={1: 1, 2: 1, 3: 2})
    assert sorted(ranking_to_pairs(ranking), key=lambda p: p.chosen) == [IdPair(1, 3, 1.0), IdPair(2, 3, 1.0)]
    kept = ranking_to_pairs(ranking, PairSettings(keep_ties=True))
    assert IdPair(1, 2, 0.0) in kept and len(kept) == 3


def test_flagged_dropped_by_default():
    ranking = RankingView(ranks={1: 1, 2: 2}, flagged=frozenset({3, 4}))
    assert ranking_to_pairs(ranking) == [IdPair(1, 2, 1.0)]


def test_flagged_rejected_against_every_unflagged_in_reject_mode():
    ranking = RankingView(ranks={1: 1, 2: 2}, flagged=frozenset({3, 4}))
    pairs = ranking_to_pairs(ranking, PairSettings(flagged="reject"))
    assert set(pairs) == {
        IdPair(1, 2, 1.0),
        IdPair(1, 3, 2.0),
        IdPair(1, 4, 2.0),
        IdPair(2, 3, 1.0),
        IdPair(2, 4, 1.0),
    }
    # two flagged answers are never compared with each other, even when ties are kept
    with_ties = ranking_to_pairs(ranking, PairSettings(flagged="reject", keep_ties=True))
    assert {(p.chosen, p.rejected) for p in with_ties} == {(p.chosen, p.rejected) for p in pairs}


def test_none_acceptable_and_skip_give_no_pairs():
    assert ranking_to_pairs(RankingView(ranks={}, flagged=frozenset({1, 2}), none_acceptable=True)) == []
    assert ranking_to_pairs(RankingView(ranks={}, none_acceptable=True), PairSettings(flagged="reject")) == []
    assert ranking_to_pairs(RankingView(ranks={}, skipped=True)) == []


def test_none_acceptable_with_a_written_answer_votes_for_it_alone():
    """The store ranks a labeler's written answer (9) first and the answers they found unacceptable tied below."""
    ranking = RankingView(ranks={9: 1, 1: 2, 2: 2}, none_acceptable=True)
    assert {(p.chosen, p.rejected) for p in ranking_to_pairs(ranking)} == {(9, 1), (9, 2)}
