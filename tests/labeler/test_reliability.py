import random

from labeler.labels.pairs import RankingView
from labeler.labels.reliability import Vote, fit_reliability, votes_from_sets, weighted_pairs


def simulated_votes(accuracies: dict[str, float], comparisons: int, seed: int = 0):
    rng = random.Random(seed)
    truth = {(i, 1, 2): rng.random() < 0.5 for i in range(comparisons)}
    votes = [
        Vote(name, c, first if rng.random() < acc else not first)
        for c, first in truth.items()
        for name, acc in accuracies.items()
    ]
    return truth, votes


def test_em_recovers_accuracies_and_puts_the_adversary_and_the_random_labeler_last():
    accuracies = {"careful": 0.9, "decent": 0.75, "adversary": 0.1, "random": 0.5}
    truth, votes = simulated_votes(accuracies, 400)
    fit = fit_reliability(votes)
    for name, acc in accuracies.items():
        assert abs(fit.accuracy[name] - acc) < 0.08, (
            name,
            fit.accuracy,
        )  # each labeler is in its own posterior
    assert [name for name, _ in fit.ranked()] == ["careful", "decent", "random", "adversary"]
    assert fit.weight("adversary") < 0 < fit.weight("decent") and abs(fit.weight("random")) < 0.3
    # the weighted posterior beats an equal-weight majority (which the adversary drags to coin flips on ties)
    by_c: dict = {}
    for v in votes:
        by_c.setdefault(v.comparison, []).append(v)
    weighted = sum((fit.posteriors[c] > 0.5) == first for c, first in truth.items()) / len(truth)
    majority = sum(
        (sum(1 if v.first_wins else -1 for v in by_c[c]) > 0) == first for c, first in truth.items()
    ) / len(truth)
    assert weighted > 0.9 and weighted > majority + 0.1, (weighted, majority)


def test_gold_comparisons_tell_an_honest_labeler_from_a_reversing_one():
    truth, votes = simulated_votes({"honest": 0.85, "reverser": 0.15}, 200, seed=1)
    gold = dict(list(truth.items())[:20])
    fit = fit_reliability(votes, gold=gold, start=0.5)  # no prior that labelers beat chance
    assert fit.accuracy["honest"] > 0.75 > 0.25 > fit.accuracy["reverser"]
    assert all(fit.posteriors[c] == (1.0 if first else 0.0) for c, first in gold.items())


def test_votes_from_rankings_skip_ties_skips_and_none_acceptable():
    sets = [
        (1, [RankingView({10: 1, 11: 2, 12: 2}, labeler="a"), RankingView({}, skipped=True, labeler="b")]),
        (2, [RankingView({}, none_acceptable=True, labeler="a"), RankingView({20: 2, 21: 1}, labeler="b")]),
    ]
    votes = votes_from_sets(sets)
    assert sorted((v.labeler, v.comparison, v.first_wins) for v in votes) == [
        ("a", (1, 10, 11), True),
        ("a", (1, 10, 12), True),
        ("b", (2, 20, 21), False),
    ]


def test_weighted_pairs_follow_the_reliable_labelers_and_carry_their_confidence():
    _, votes = simulated_votes({"careful": 0.9, "decent": 0.8, "adversary": 0.1}, 300, seed=2)
    fit = fit_reliability(votes)
    # one set ranked by all three: the adversary reverses the careful labeler's order
    rankings = [
        RankingView({1: 1, 2: 2, 3: 3}, labeler="careful"),
        RankingView({1: 2, 2: 1, 3: 3}, labeler="decent"),
        RankingView({1: 3, 2: 2, 3: 1}, labeler="adversary"),
    ]
    pairs = {(p.chosen, p.rejected): p for p in weighted_pairs(7, rankings, fit)}
    # a head count puts 2 above 1 (decent and the adversary); the weights reverse the adversary and put 1 first
    assert set(pairs) == {(1, 2), (1, 3), (2, 3)}
    assert pairs[(1, 3)].confidence > pairs[(1, 2)].confidence > 0.5  # (1, 3): all three agree once reversed
    assert pairs[(1, 3)].weight > 0.9 and pairs[(1, 3)].margin == 1.5  # gaps 2 (careful) and 1 (decent)
