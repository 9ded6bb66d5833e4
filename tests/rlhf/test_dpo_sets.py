"""Set-wise DPO (rlhf/train/dpo_sets.py) on the tiny model: its loss is DPO's per-pair loss, computed pair by pair
with separate unpadded forward passes; it learns the synthetic store's preference; `rankloop dpo` runs it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from sqlmodel import Session

from labeler.labels.pairs import PairSettings
from labeler.store.db import make_engine
from models.logprobs import answer_logprobs
from models.tiny import tiny_model_and_tokenizer
from rlhf.train.configs import DPOConfig
from rlhf.train.dpo_sets import batch_rows, implicit_accuracy, set_loss, set_rows, top_rows, train_on_sets
from rlhf.train.losses import bradley_terry_loss, ranking_batch_loss
from rlhf.train.progress import ConsoleReporter
from rlhf.train.reward_data import Group, load_groups
from tests.rlhf.synthetic import synthetic_store

BETA = 0.3


def lora(model, seed: int = 0):
    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(model, config)


def group(prompt: str, texts: list[str], pairs: list[tuple[int, int]], set_id: int = 1) -> Group:
    messages = [{"role": "user", "content": prompt}]
    return Group(
        set_id, messages, prompt, list(range(len(texts))), texts, [(c, r, 1.0, 1.0) for c, r in pairs]
    )


def greeting(pairs: list[tuple[int, int]]):
    """One set of three answers to "hi there" (the second much the longest) with `pairs`, on the tiny model with a
    random adapter: the set, then `scored`'s rows, pairs and log-probabilities."""
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model = lora(model)
    groups = [group("hi there", ["hello", "a much longer answer to the greeting", "no"], pairs)]
    return groups, *scored(model, tokenizer, groups)


def scored(model, tokenizer, groups: list[Group]):
    """The batch's rows and pairs, and each answer's log-probability under the reference and the policy."""
    rows, pairs = batch_rows(groups, tokenizer, max_length=512)
    with torch.no_grad():
        with model.disable_adapter():
            reference = answer_logprobs(model, rows, pad_id=tokenizer.pad_token_id)
        policy = answer_logprobs(model, rows, pad_id=tokenizer.pad_token_id)
    return rows, pairs, reference, policy


def logp_alone(model, tokenizer, g: Group, index: int) -> torch.Tensor:
    prompt, answer = set_rows(g, tokenizer, max_length=512)[index]
    ids = torch.tensor([prompt + answer])
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return torch.log_softmax(logits, -1).gather(1, torch.tensor(answer).unsqueeze(1)).sum()


def test_the_set_loss_is_dpos_loss_over_the_sets_pairs():
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model = lora(model)
    groups = [
        group("hi there", ["hello", "a much longer answer to the greeting", "no"], [(0, 1), (0, 2), (1, 2)]),
        group("name a colour", ["blue", "the sky is blue today"], [(1, 0)], set_id=2),
    ]
    _, pairs, reference, policy = scored(model, tokenizer, groups)
    loss = ranking_batch_loss(BETA * (policy - reference), pairs)

    per_pair = []
    with torch.no_grad():
        for g in groups:
            for c, r, _, _ in g.pairs:
                with model.disable_adapter():
                    ref_c, ref_r = logp_alone(model, tokenizer, g, c), logp_alone(model, tokenizer, g, r)
                pol_c, pol_r = logp_alone(model, tokenizer, g, c), logp_alone(model, tokenizer, g, r)
                per_pair.append(-F.logsigmoid(BETA * ((pol_c - ref_c) - (pol_r - ref_r))))
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2], [4, 3]]
    assert (
        loss.item() == torch.stack(per_pair).mean().item() or abs(loss - torch.stack(per_pair).mean()) < 1e-5
    )
    assert abs(reference.sum() - policy.sum()) > 1e-3  # the adapter changes the scores: the test can fail


def test_label_smoothing_reads_each_label_as_wrong_with_its_share_and_stops_at_a_finite_margin():
    groups, rows, pairs, reference, policy = greeting([(0, 1), (0, 2), (1, 2)])
    parts = set_loss(policy, reference, rows, groups, DPOConfig(beta=BETA, label_smoothing=0.2))

    margins = BETA * ((policy - reference)[pairs[:, 0]] - (policy - reference)[pairs[:, 1]])
    by_hand = (-0.8 * F.logsigmoid(margins) - 0.2 * F.logsigmoid(-margins)).mean()
    assert abs(parts.loss - by_hand) < 1e-5
    assert abs(parts.loss - set_loss(policy, reference, rows, groups, DPOConfig(beta=BETA)).loss) > 1e-4

    margin = torch.tensor([0.0, 1.0, 1.3863, 3.0], requires_grad=True)  # log(0.8 / 0.2) = 1.3863
    (grad,) = torch.autograd.grad(bradley_terry_loss(margin, torch.zeros(4), smoothing=0.2), margin)
    # pushed up below the finite margin, left alone at it, pulled back above it
    assert grad[0] < 0 and grad[1] < 0 and abs(grad[2]) < 1e-4 and grad[3] > 0
    with pytest.raises(
        ValueError, match=r"label_smoothing = 0.5 is out of range: it must be at least 0 and at most 0\.49"
    ):
        DPOConfig(label_smoothing=0.5)


def test_set_rows_keep_the_answer_and_its_end_of_turn_token_when_cut_to_max_length():
    _, tokenizer = tiny_model_and_tokenizer(seed=0)
    g = group("a prompt with quite a few words in it", ["an answer"], [])
    [(prompt, answer)] = set_rows(g, tokenizer, max_length=512)
    [(short_prompt, same_answer)] = set_rows(g, tokenizer, max_length=len(answer) + 3)
    assert same_answer == answer and short_prompt == prompt[-3:]
    assert tokenizer.decode(answer).startswith("an answer")


def test_training_on_sets_learns_the_synthetic_preference(tmp_path):
    url, _ = synthetic_store(tmp_path, sets=24)
    with Session(make_engine(url)) as s:
        groups = load_groups(session=s, settings=PairSettings())
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"])
    )
    config = DPOConfig(epochs=3, learning_rate=3e-3, beta=BETA, batch_sets=2, device="cpu", max_length=128)
    trained, final = train_on_sets(model, tokenizer, groups, config, ConsoleReporter())
    rows, pairs = batch_rows(groups, tokenizer, config.max_length)
    with torch.no_grad():
        with trained.disable_adapter():
            reference = answer_logprobs(trained, rows, pad_id=tokenizer.pad_token_id)
        policy = answer_logprobs(trained, rows, pad_id=tokenizer.pad_token_id)
    rewards = policy - reference
    accuracy = (rewards[pairs[:, 0]] > rewards[pairs[:, 1]]).float().mean().item()
    assert accuracy > 0.8, accuracy  # at the start every implicit reward is 0 (adapter B = 0): accuracy 0
    assert implicit_accuracy(trained, tokenizer, groups, config)["heldout_accuracy"] == accuracy
    unseen_url, _ = synthetic_store(tmp_path / "unseen", sets=12, seed=1)  # new sets of the same preference
    with Session(make_engine(unseen_url)) as s:
        unseen = load_groups(session=s, settings=PairSettings())
    figures = implicit_accuracy(trained, tokenizer, unseen, config)
    assert figures["heldout_accuracy"] > 0.7 and figures["heldout_sets"] == 12, figures
    assert (
        final["loss"] < 0.6 and final["step"] == 36
    )  # 3 epochs x 12 steps of 2 sets; log 2 = 0.69 at the start


def test_each_sets_best_answers_are_those_never_rejected_and_sft_adds_their_per_token_nll():
    tied = group("a", ["x", "y", "z"], [(0, 2), (1, 2)])  # 0 and 1 tie at the top
    cycle = group("b", ["p", "q", "r"], [(0, 1), (1, 2), (2, 0)], set_id=2)  # majorities in a circle: no best
    plain = group("c", ["u", "v"], [(1, 0)], set_id=3)
    assert top_rows([tied, cycle, plain]).tolist() == [0, 1, 7]  # offsets 0, 3, 6
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model = lora(model)
    groups = [group("hi there", ["hello", "a longer answer", "no"], [(0, 1), (0, 2), (1, 2)]), plain]
    rows, pairs, reference, policy = scored(model, tokenizer, groups)
    dpo = ranking_batch_loss(BETA * (policy - reference), pairs)
    nll = -(policy[0] / len(rows[0][1]) + policy[4] / len(rows[4][1])) / 2  # "hello" and "v"
    settings = {"beta": BETA, "device": "cpu"}
    both = set_loss(policy, reference, rows, groups, DPOConfig(sft_weight=0.5, **settings))
    alone = set_loss(policy, reference, rows, groups, DPOConfig(pair_weight=0, sft_weight=1, **settings))
    assert both.loss.item() == pytest.approx((dpo + 0.5 * nll).item(), rel=1e-5)
    assert alone.loss.item() == pytest.approx(nll.item(), rel=1e-5) and both.sft_nll == alone.sft_nll
    with pytest.raises(ValueError, match="both 0"):
        DPOConfig(pair_weight=0)
    with pytest.raises(ValueError, match="trainer=trl trains DPO's loss alone"):
        DPOConfig(trainer="trl", sft_weight=1)


def test_the_kl_term_is_each_answers_exact_token_kl_from_the_reference_and_holds_training_near_it(tmp_path):
    from models.divergence import token_kl
    from rlhf.train.dpo_sets import score_rows

    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model = lora(model)
    groups = [group("hi there", ["hello", "a longer answer", "no"], [(0, 1), (0, 2), (1, 2)])]
    rows, _, reference, policy = scored(model, tokenizer, groups)
    pad = tokenizer.pad_token_id
    parts = score_rows(model, model, rows, pad, kl_grad=True)
    with torch.no_grad():
        by_hand = token_kl(model, rows, pad_id=pad, temperature=1.0)
    assert torch.allclose(parts.kl.detach(), by_hand, atol=1e-5) and by_hand.min() > 0
    assert torch.allclose(parts.policy.detach(), policy, atol=1e-5)
    assert torch.allclose(parts.reference, reference, atol=1e-5)
    dpo = ranking_batch_loss(BETA * (policy - reference), torch.tensor([[0, 1], [0, 2], [1, 2]]))
    weighted = set_loss(policy, reference, rows, groups, DPOConfig(beta=BETA, kl_weight=0.2), by_hand)
    assert weighted.loss.item() == pytest.approx((dpo + 0.2 * by_hand.mean()).item(), rel=1e-5)
    with pytest.raises(ValueError, match="kl_weight"):
        DPOConfig(trainer="trl", kl_weight=0.1)

    # the same data, seed and learning rate: the weighted run ends nearer the reference, and both log the KL
    url, _ = synthetic_store(tmp_path, sets=12)
    with Session(make_engine(url)) as s:
        synthetic = load_groups(session=s, settings=PairSettings())
    ends = {}
    for weight in (0.0, 1.0):
        tiny, _ = tiny_model_and_tokenizer(seed=0)
        peft_model = get_peft_model(tiny, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        config = DPOConfig(
            epochs=2, learning_rate=1e-2, beta=BETA, kl_weight=weight, device="cpu", max_length=128
        )
        trained, final = train_on_sets(peft_model, tokenizer, synthetic, config, ConsoleReporter())
        train_rows, _ = batch_rows(synthetic, tokenizer, config.max_length)
        with torch.no_grad():
            ends[weight] = token_kl(trained, train_rows, pad_id=pad, temperature=1.0).mean().item()
        assert final["kl"] >= 0
    assert ends[1.0] < 0.5 * ends[0.0], ends


def test_the_length_weight_adds_r_dpos_length_term_to_each_pairs_margin():
    groups, rows, pairs, reference, policy = greeting([(0, 1), (1, 0), (1, 2)])
    alpha = 0.05
    parts = set_loss(policy, reference, rows, groups, DPOConfig(beta=BETA, length_weight=alpha))

    tokens = torch.tensor([float(len(answer)) for _, answer in rows])
    rewards = BETA * (policy - reference)
    by_hand = -F.logsigmoid(
        rewards[pairs[:, 0]] - rewards[pairs[:, 1]] + alpha * (tokens[pairs[:, 0]] - tokens[pairs[:, 1]])
    )
    assert abs(parts.loss - by_hand.mean()) < 1e-5
    assert parts.length_gap == pytest.approx((tokens[pairs[:, 0]] - tokens[pairs[:, 1]]).mean().item())
    without = -F.logsigmoid(rewards[pairs[:, 0]] - rewards[pairs[:, 1]])
    assert (
        tokens[1] - tokens[0] >= 5
    )  # preferring the long answer costs less than without the term, rejecting it more
    assert by_hand[0] > without[0] and by_hand[1] < without[1]
    plain = set_loss(policy, reference, rows, groups, DPOConfig(beta=BETA)).loss
    assert abs(parts.loss - plain) > 1e-4
    with pytest.raises(ValueError, match=r"trainer=trl trains DPO.s loss alone.*length_weight"):
        DPOConfig(trainer="trl", length_weight=alpha)
    with pytest.raises(ValueError, match=r"length_weight = -0.1 is out of range"):
        DPOConfig(length_weight=-0.1)


def test_tail_averaging_ends_on_the_mean_of_the_last_steps_weights(tmp_path):
    from rlhf.train.dpo_sets import TailAverage

    weight = torch.nn.Parameter(torch.zeros(3))
    average = TailAverage([weight], steps=4, share=0.5)
    for step in range(1, 5):
        weight.data.fill_(float(step))
        average.add(step)
    average.apply()
    assert weight.tolist() == [3.5, 3.5, 3.5]  # steps 3 and 4
    untouched = torch.nn.Parameter(torch.ones(2))
    none = TailAverage([untouched], steps=4, share=0.0)
    for step in range(1, 5):
        none.add(step)
    none.apply()
    assert untouched.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="tail_average"):
        DPOConfig(trainer="trl", tail_average=0.5)

    # in training: the adapter ends on the mean of the weights its last half of steps reached
    url, _ = synthetic_store(tmp_path, sets=8)
    with Session(make_engine(url)) as s:
        synthetic = load_groups(session=s, settings=PairSettings())
    model, tokenizer = tiny_model_and_tokenizer(seed=0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    params = [p for p in model.parameters() if p.requires_grad]
    seen: list[list[torch.Tensor]] = []

    class Snapshots(ConsoleReporter):
        def step(self, metrics: dict | None = None) -> None:
            seen.append([p.detach().clone() for p in params])

    config = DPOConfig(learning_rate=1e-2, beta=BETA, tail_average=0.5, device="cpu", max_length=128)
    train_on_sets(model, tokenizer, synthetic, config, Snapshots())
    assert len(seen) == 8
    for k, p in enumerate(params):
        expected = torch.stack([snapshot[k] for snapshot in seen[4:]]).mean(0)
        assert torch.allclose(p.detach(), expected, atol=1e-6)
        assert not torch.allclose(p.detach(), seen[-1][k])
