"""The over-optimisation monitor: synthetic proxy and gold series stop (or do not stop) where they should; a PPO
run on the tiny model whose gold judge disagrees with its reward stops early and records where."""

from __future__ import annotations

from sqlmodel import Session, select

from labeler.labels.instructions import Instruction
from labeler.store.db import make_engine
from labeler.store.tables import PolicyVersion
from rlhf.train import ppo
from rlhf.train.overopt import OveroptimisationMonitor, preference_judge
from tests.rlhf.ppo_helpers import ppo_store, quick_config, target_share


def first_stop(monitor: OveroptimisationMonitor, proxy: list[float], gold: list[float]) -> int | None:
    for step, (p, g) in enumerate(zip(proxy, gold, strict=True), 1):
        if monitor.observe(step, proxy=p, gold=g):
            return step
    return None


def test_gold_falling_while_proxy_rises_stops_after_patience_checks():
    proxy = [0.1 * s for s in range(1, 21)]
    gold = [1.0] * 6 + [1.0 - 0.1 * s for s in range(1, 15)]  # falls from step 7 on
    monitor = OveroptimisationMonitor(patience=3, window=2)
    assert first_stop(monitor, proxy, gold) == 12  # the windows ending at steps 8, 10 and 12 are the strikes
    assert monitor.stopped_at == 12 and "fell for 3 checks" in monitor.reason


def test_no_stop_while_gold_follows_the_proxy_or_both_fall():
    rising = [0.1 * s for s in range(1, 21)]
    assert first_stop(OveroptimisationMonitor(), rising, rising) is None
    falling = [-x for x in rising]
    assert (
        first_stop(OveroptimisationMonitor(), falling, falling) is None
    )  # both fall: a bad run, not hacking
    wobbly = [1.0, 0.9] * 10  # noise within a window averages out
    assert first_stop(OveroptimisationMonitor(), rising, wobbly) is None


def test_with_stopping_off_the_strikes_are_only_recorded():
    monitor = OveroptimisationMonitor(patience=2, window=1, stop=False)
    assert first_stop(monitor, [1, 2, 3, 4], [4, 3, 2, 1]) is None and monitor.stopped_at == 3


def test_the_instructions_judge_scores_decoded_responses(tmp_path):
    from models.tiny import tiny_tokenizer
    from rlhf.train.ppo_step import Rollout

    tok = tiny_tokenizer()
    ids = tok(["hello there", "HELLO THERE"], return_tensors="pt", padding=True)["input_ids"]
    ro = Rollout(
        ids, ids.ne(tok.pad_token_id).long(), 0, ids.ne(tok.pad_token_id).float(), ids[:, 0].eq(ids[:, 0])
    )
    scores = preference_judge("instructions", tok)(
        ro, [[Instruction("lowercase")], [Instruction("lowercase")]]
    )
    assert scores[0] > scores[1]


def test_ppo_stops_when_its_gold_judge_falls_while_the_reward_rises(tmp_path):
    url, _ = ppo_store(tmp_path)

    def gold_against_reward(ro, instructions):  # what the reward model likes, the gold judge dislikes
        return (1 - target_share(None, ro)).tolist()

    config = quick_config(tmp_path, url, steps=25, overopt_patience=2, overopt_window=2)
    result = ppo.run(config, reward_fn=target_share, gold_fn=gold_against_reward)
    assert len(result.history) < 25 and all("gold" in m for m in result.history)
    with Session(make_engine(url)) as s:
        v1 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 1)).one()
    record = v1.metrics["overoptimisation"]
    assert record["stopped"] and record["stopped_at"] == len(result.history) == v1.metrics["steps_done"]


def test_the_training_tab_plots_proxy_and_gold_against_kl():
    from labeler.store.tables import Job
    from labeler.ui.admin_training import overopt_frame

    job = Job(
        kind="ppo",
        metrics=[{"step": 1, "kl": 0.5, "reward": 1.0, "gold": 2.0}, {"step": 2, "kl": 1.5, "reward": 3.0}],
    )
    frame = overopt_frame(job)
    assert frame.to_dict("records") == [
        {"kl": 0.5, "score": "proxy (reward model)", "value": 1.0},
        {"kl": 0.5, "score": "gold", "value": 2.0},
    ]  # the step without a gold score is left out
