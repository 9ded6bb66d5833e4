import math

import pytest
import torch

from rlhf.train.ppo_math import (
    AdaptiveKLController,
    LengthTrend,
    explained_variance,
    gae,
    kl_estimate,
    leave_one_out,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)


def test_gae_by_hand():
    # one sequence of 3 tokens, gamma 0.5, lambda 0.5
    r, v, m = torch.tensor([[1.0, 0.0, 2.0]]), torch.tensor([[0.5, 1.0, 1.5]]), torch.ones(1, 3)
    adv, ret = gae(r, v, m, gamma=0.5, lam=0.5)
    d2 = 2.0 - 1.5
    d1 = 0.0 + 0.5 * 1.5 - 1.0
    d0 = 1.0 + 0.5 * 1.0 - 0.5
    a2, a1 = d2, d1 + 0.25 * d2
    a0 = d0 + 0.25 * a1
    assert torch.allclose(adv, torch.tensor([[a0, a1, a2]]))
    assert torch.allclose(ret, adv + v)


def test_gae_ignores_padding():
    r, v = torch.tensor([[1.0, 2.0, 9.0]]), torch.tensor([[0.5, 0.5, 7.0]])
    padded, _ = gae(r, v, torch.tensor([[1.0, 1.0, 0.0]]), gamma=1.0, lam=1.0)
    short, _ = gae(r[:, :2], v[:, :2], torch.ones(1, 2), gamma=1.0, lam=1.0)
    assert torch.allclose(padded[:, :2], short) and padded[0, 2] == 0


def test_whiten_and_masked_mean():
    x, m = torch.tensor([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    w = masked_whiten(x, m)
    assert masked_mean(w, m).item() == pytest.approx(0.0, abs=1e-6)
    assert w[0, 3] == 0 and w[0, 2].item() == pytest.approx(1 / math.sqrt(2 / 3), rel=1e-4)


def test_kl_estimators_by_hand():
    lp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert kl_estimate(lp, ref, "k1").item() == pytest.approx(1.0)
    assert kl_estimate(lp, ref, "k3").item() == pytest.approx(math.exp(-1) - 1 + 1)
    assert kl_estimate(lp, lp, "k3").item() == 0.0


def test_token_rewards_put_score_on_last_real_token():
    kl, mask = torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([[1.0, 1.0, 0.0]])
    out = token_rewards(torch.tensor([5.0]), kl, mask, kl_coef=0.5)
    assert torch.allclose(out, torch.tensor([[-0.05, 5 - 0.1, 0.0]]))


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv, mask = torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    loss, clip_frac, _ = policy_loss(new, old, adv, mask, clip=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 ; token 2: max(0.5, 0.8) = 0.8
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)
    assert clip_frac.item() == pytest.approx(1.0)


def test_clipped_value_loss_by_hand():
    v, old, ret, mask = torch.tensor([[2.0]]), torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.ones(1, 1)
    # clipped value 1.2: max((2-3)^2, (1.2-3)^2) = 3.24
    assert value_loss(v, old, ret, mask, clip=0.2).item() == pytest.approx(0.5 * 3.24)


def test_adaptive_kl_controller_moves_toward_target():
    c = AdaptiveKLController(value=0.1, target=1.0, horizon=100)
    assert c.update(2.0, 10) == pytest.approx(0.1 * 1.02)
    c2 = AdaptiveKLController(value=0.1, target=1.0, horizon=100)
    assert c2.update(0.5, 10) < 0.1


def test_a_round_sized_horizon_moves_the_coefficient_toward_target_within_one_round():
    from rlhf.train.ppo_math import round_horizon

    steps, batch = 16, 8  # a 128-episode round, with KL at twice the target all along (as bench/loop.py saw)
    sized = AdaptiveKLController(value=0.05, target=4.0, horizon=round_horizon(steps, batch))
    fixed = AdaptiveKLController(value=0.05, target=4.0)  # Ziegler's 10,000-episode horizon
    for _ in range(steps):
        sized.update(8.0, batch)
        fixed.update(8.0, batch)
    assert sized.value > 4 * 0.05 and fixed.value < 1.03 * 0.05
    low = AdaptiveKLController(value=0.05, target=4.0, horizon=round_horizon(steps, batch))
    for _ in range(steps):
        low.update(1.0, batch)
    assert low.value < 0.25 * 0.05
    assert round_horizon(steps, batch, 500) == 500


def test_explained_variance():
    ret, mask = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)
    assert explained_variance(ret, ret, mask) == 1.0
    assert explained_variance(torch.zeros(1, 3) + 2.0, ret, mask) == pytest.approx(0.0)


def test_leave_one_out_by_hand():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 10.0])
    # first prompt: 1 - (2 + 3) / 2, 2 - (1 + 3) / 2, 3 - (1 + 2) / 2; the second's answers are all alike
    assert torch.allclose(leave_one_out(rewards, 3), torch.tensor([-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]))
    assert torch.allclose(leave_one_out(rewards, 2), torch.tensor([-1.0, 1.0, -7.0, 7.0, 0.0, 0.0]))  # pairs
    with pytest.raises(ValueError, match="groups of 4"):
        leave_one_out(rewards, 4)
    with pytest.raises(ValueError, match="group >= 2"):
        leave_one_out(rewards, 1)


def test_the_length_trend_is_least_squares_over_every_batch_so_far_and_keeps_the_mean():
    trend = LengthTrend()
    tokens, scores = torch.tensor([10, 20, 30, 40]), torch.tensor([4.0, 3.0, 2.0, 1.0])  # 0.1 less a token
    first = trend.remove(tokens, scores)
    assert trend.slope == pytest.approx(-0.1)
    assert torch.allclose(first, torch.full((4,), 2.5))  # length explained every difference
    # a second batch: the fit pools both; what the length does not explain stays
    second = trend.remove(torch.tensor([10, 40]), torch.tensor([5.0, 1.0]))
    x = torch.tensor([10, 20, 30, 40, 10, 40.0])
    y = torch.tensor([4.0, 3.0, 2.0, 1.0, 5.0, 1.0])
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert trend.slope == pytest.approx(slope.item())
    assert torch.allclose(second, torch.tensor([5.0, 1.0]) - slope * (torch.tensor([10, 40.0]) - x.mean()))
    assert LengthTrend().remove(torch.tensor([7, 7]), torch.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
