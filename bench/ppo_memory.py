"""PPO memory: one PPO step (8 prompts, 48 new tokens, embedded default, CPU) with the shared base (policy LoRA +
value head, reference = adapters off, reward adapter, all on one copy) against the same step with separate
copies: a reference model, a value model (full copy with a head, trained) and a reward model, each in its own
process, as systems without weight sharing run it. Peak memory is the largest summed RSS of the step's
processes, sampled from outside every 20 ms. Target: shared peak <= 0.45x the separate one.

    .venv/bin/python bench/ppo_memory.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import psutil
from results import record_result  # bench/results.py: the line, kept in bench/results/

PROMPTS = Path(__file__).resolve().parents[1] / "data" / "prompts.jsonl"
HOME = os.environ.get("RANKLOOP_HOME", "runs")


def prompts(n: int) -> list[list[dict]]:
    lines = PROMPTS.read_text().splitlines()[:n]
    return [[{"role": "user", "content": json.loads(x)["prompt"]}] for x in lines]


def make_reward_folder(folder: Path) -> None:
    """A reward adapter + head (untrained weights suffice for a memory and timing measurement)."""
    from peft import LoraConfig, get_peft_model

    from models.loading import load_base
    from rlhf.train.scoring import RewardMeta, ScoreHead, save_reward_model

    base, _ = load_base("default", home=Path(HOME), device="cpu")
    model = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]), adapter_name="reward"
    )
    save_reward_model(folder, model, ScoreHead(base.config.hidden_size), RewardMeta(base_model="default"))


def config():
    from rlhf.train.configs import PPOConfig

    return PPOConfig(
        batch_prompts=8, minibatch=4, ppo_epochs=1, max_new_tokens=48, device="cpu", no_eos_penalty=None
    )


def shared_step(reward_folder: str, conn) -> None:
    import torch

    from models.loading import load_base
    from rlhf.train.ppo import reward_model_fn
    from rlhf.train.ppo_model import build_shared
    from rlhf.train.ppo_step import ppo_update, rollout, score_rollout

    torch.manual_seed(0)
    cfg = config()
    base, tok = load_base("default", home=Path(HOME), device="cpu")
    shared = build_shared(base, policy_path=None, reward_path=reward_folder)
    params = [p for p in shared.policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    from accelerate import Accelerator

    acc = Accelerator(cpu=True)
    conn.send("loaded")
    start = time.perf_counter()
    ro = rollout(shared.model, tok, prompts(cfg.batch_prompts), cfg)
    sc = score_rollout(shared, ro, reward_model_fn(shared, ro), cfg.kl_coef, cfg)
    ppo_update(shared, shared.policy, opt, acc, ro, sc, cfg, params)
    conn.send(time.perf_counter() - start)


def role_server(role: str, reward_folder: str, conn) -> None:
    """A separate model process: reference (full copy), value (full copy + head, trained), reward (copy + adapter)."""
    import torch
    from peft import PeftModel

    from models.loading import load_base
    from rlhf.train.ppo_math import value_loss
    from rlhf.train.ppo_model import ValueHead, gather_logprobs
    from rlhf.train.scoring import RewardScorer, load_head

    model, _ = load_base("default", home=Path(HOME), device="cpu")
    if role == "reward":
        scorer = RewardScorer(
            PeftModel.from_pretrained(model, reward_folder, adapter_name="reward"),
            load_head(Path(reward_folder), model.config.hidden_size),
        )
    if role == "value":
        head = ValueHead(model.config.hidden_size)
        opt = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-6)
    conn.send("loaded")
    while (msg := conn.recv()) is not None:
        kind, ids, mask, p_len, extra = msg
        if role == "reference":
            with torch.no_grad():
                conn.send(
                    gather_logprobs(
                        model(input_ids=ids, attention_mask=mask).logits[:, p_len - 1 : -1], ids[:, p_len:]
                    )
                )
        elif role == "reward":
            with torch.no_grad():
                conn.send(scorer(ids, mask))
        elif kind == "values":
            with torch.no_grad():
                hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[
                    -1
                ]
                conn.send(head(hidden[:, p_len - 1 : -1]))
        else:  # train the value model on minibatches
            old_values, returns, rmask = extra
            for idx in torch.arange(ids.shape[0]).split(4):
                hidden = model(
                    input_ids=ids[idx], attention_mask=mask[idx], output_hidden_states=True
                ).hidden_states[-1]
                loss = value_loss(
                    head(hidden[:, p_len - 1 : -1]), old_values[idx], returns[idx], rmask[idx], 0.2
                )
                loss.backward()
                opt.step()
                opt.zero_grad()
            conn.send(loss.item())


def separate_step(reward_folder: str, conn) -> None:
    """The policy process of the separate setup: generates, asks the other models, updates the policy."""
    import torch
    from peft import LoraConfig, get_peft_model

    from models.loading import load_base
    from rlhf.train.ppo_math import gae, kl_estimate, masked_whiten, policy_loss, token_rewards
    from rlhf.train.ppo_model import gather_logprobs
    from rlhf.train.ppo_step import Rollout, rollout

    torch.manual_seed(0)
    cfg = config()
    ctx = mp.get_context("spawn")
    servers = {}
    for role in ("reference", "value", "reward"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=role_server, args=(role, reward_folder, child))
        proc.start()
        servers[role] = (proc, parent)
    conn.send(("pids", [p.pid for p, _ in servers.values()]))
    for _, pipe in servers.values():
        pipe.recv()
    base, tok = load_base("default", home=Path(HOME), device="cpu")
    policy = get_peft_model(
        base,
        LoraConfig(
            r=16,
            lora_alpha=32,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
    )
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    conn.send("loaded")
    start = time.perf_counter()

    ro: Rollout = rollout(policy, tok, prompts(cfg.batch_prompts), cfg)
    args = (ro.input_ids, ro.attention_mask, ro.prompt_len)

    def ask(role, kind="", extra=None):
        servers[role][1].send((kind, *args, extra))
        return servers[role][1].recv()

    with torch.no_grad():
        old_lp = gather_logprobs(
            policy(input_ids=ro.input_ids, attention_mask=ro.attention_mask).logits[
                :, ro.prompt_len - 1 : -1
            ],
            ro.responses,
        )
    ref_lp, scores, values = ask("reference"), ask("reward"), ask("value", "values")
    mask = ro.response_mask
    rewards = token_rewards(scores, kl_estimate(old_lp, ref_lp) * mask, mask, cfg.kl_coef)
    adv, ret = gae(rewards, values * mask, mask, cfg.gamma, cfg.lam)
    adv = masked_whiten(adv, mask)
    for idx in torch.arange(ro.input_ids.shape[0]).split(cfg.minibatch):
        logits = policy(input_ids=ro.input_ids[idx], attention_mask=ro.attention_mask[idx]).logits[
            :, ro.prompt_len - 1 : -1
        ]
        loss, _, _ = policy_loss(
            gather_logprobs(logits, ro.responses[idx]), old_lp[idx], adv[idx], mask[idx], cfg.clip
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
    ask("value", "train", (values * mask, ret, mask))
    conn.send(time.perf_counter() - start)
    for proc, pipe in servers.values():
        pipe.send(None)
        proc.join()


def measure(target, reward_folder: str) -> tuple[float, float]:
    """Run one setup in fresh processes; returns (peak summed RSS in GiB over the step's processes, step seconds)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(reward_folder, child))
    proc.start()
    pids, peak, seconds = [proc.pid], 0, None
    while seconds is None:
        if parent.poll(0.02):
            msg = parent.recv()
            if isinstance(msg, tuple) and msg[0] == "pids":
                pids += msg[1]
            elif isinstance(msg, float):
                seconds = msg
        total = 0
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += psutil.Process(pid).memory_info().rss
        peak = max(peak, total)
        if not proc.is_alive() and seconds is None:
            raise RuntimeError(f"{target.__name__} died with code {proc.exitcode}")
    proc.join()
    return peak / 2**30, seconds


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "reward"
        make_reward_folder(folder)
        shared_gib, shared_s = measure(shared_step, str(folder))
        print(f"shared base: peak {shared_gib:.2f} GiB, step {shared_s:.1f}s")
        separate_gib, separate_s = measure(separate_step, str(folder))
        print(f"separate copies (4 processes): peak {separate_gib:.2f} GiB, step {separate_s:.1f}s")
    record_result(
        f"RESULT shared_peak_gib={shared_gib:.2f} separate_peak_gib={separate_gib:.2f} ratio={shared_gib / separate_gib:.2f} "
        f"shared_step_s={shared_s:.1f} separate_step_s={separate_s:.1f}"
    )


if __name__ == "__main__":
    main()
