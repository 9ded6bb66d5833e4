"""The command line end to end on the tiny in-process model, in a temp home, as a user runs it: accounts, prompts
in, completion sets generated from the current policy, labels (through the store, as the app writes them), a
reward model, a PPO round making v1 current, and the export. (`dpo` and `round --optimizer dpo`:
tests/rlhf/test_dpo.py; `serve`: tests/ui.)"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session, col, select

from labeler.store.db import make_engine
from labeler.store.leasing import lease_next_set
from labeler.store.store import RankingIn, submit_ranking
from labeler.store.tables import CompletionSet, PolicyVersion, RewardModel, User, id_of
from models.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]


def rankloop(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "app", *args, "--home", str(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"rankloop {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def label_everything(url: str, labeler: str) -> int:
    engine = make_engine(url)
    rng = random.Random(0)
    with Session(engine) as s:
        user_id = id_of(s.exec(select(User).where(User.name == labeler)).one())
        count = 0
        while (leased := lease_next_set(session=s, user_id=user_id)) is not None:
            order = rng.sample(range(1, len(leased.completions) + 1), len(leased.completions))
            ranks = {id_of(c): r for c, r in zip(leased.completions, order, strict=True)}
            ranking = RankingIn(id_of(leased.set), user_id, f"cli-{count}", ranks=ranks)
            submit_ranking(session=s, ranking=ranking)
            count += 1
    engine.dispose()
    return count


def test_the_command_line_from_accounts_to_a_trained_policy_and_an_export(tmp_path):
    home = tmp_path / "home"
    model = str(save_tiny_checkpoint(tmp_path / "tiny", init_range=0.2))
    url = f"sqlite:///{home / 'rankloop.db'}"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say something about {t}."}) + "\n" for t in range(12)))

    assert model in rankloop(home, "prepare-model", "--model", model)
    rankloop(home, "user", "add", "ann", "--password", "ann-password-1")
    rankloop(home, "import", "prompts", str(prompts))
    out = rankloop(home, "generate", "--prompts", str(prompts), "--n", "3", "--model", model, "--device", "cpu",
                   "--max-new-tokens", "6", "--backend", "transformers")  # fmt: skip
    assert "wrote 12 completion sets of 3 from policy v0" in out
    assert label_everything(url, "ann") == 12

    rankloop(home, "reward", "--model", model, "--epochs", "1", "--max_length", "48", "--device", "cpu")
    rankloop(home, "ppo", "--steps", "1", "--batch_prompts", "4", "--minibatch", "2", "--max_new_tokens", "4",
             "--sample_prompts", "1", "--device", "cpu")  # fmt: skip
    with Session(make_engine(url)) as s:
        assert s.exec(select(RewardModel)).first() is not None
        versions = s.exec(select(PolicyVersion).order_by(col(PolicyVersion.version))).all()
        assert [(v.version, v.is_current) for v in versions] == [(0, False), (1, True)]
        assert len(s.exec(select(CompletionSet)).all()) == 12
    # group advantages (README: `rankloop ppo --advantage group`): two answers to each of 2 prompts a step
    rankloop(home, "ppo", "--steps", "1", "--batch_prompts", "2", "--minibatch", "2", "--max_new_tokens", "4",
             "--sample_prompts", "1", "--device", "cpu", "--advantage", "group", "--group_size", "2")  # fmt: skip
    with Session(make_engine(url)) as s:
        v2 = s.exec(select(PolicyVersion).where(PolicyVersion.is_current)).one()
        assert v2.version == 2 and v2.metrics["config"]["advantage"] == "group"
        assert v2.metrics["final"]["explained_variance"] == 0.0  # no value head in group mode

    out_dir = tmp_path / "export"
    rankloop(home, "export", "--format", "jsonl", "--out", str(out_dir), "--raw")
    pairs = [json.loads(line) for line in (out_dir / "preferences.jsonl").read_text().splitlines()]
    assert len(pairs) == 12 * 3  # 3 choose 2 per ranking, strict ranks
    assert {"prompt", "chosen", "rejected"} <= set(pairs[0])
    raw = [json.loads(line) for line in (out_dir / "rankings.jsonl").read_text().splitlines()]
    assert len(raw) == 12 and {r["labeler"] for r in raw} == {"ann"}

    # a rule judge ranks the sets (README: `rankloop judge add`), then PPO on its checks alone
    # (README: `rankloop ppo --reward_source rules --rules_judge NAME`): no reward model read
    rules = tmp_path / "rules.txt"
    rules.write_text("fewer than 4 words\nmust not match: [A-Z]\n")
    rankloop(home, "judge", "add", "brief", "--rules", str(rules))
    assert "judges wrote 12 rankings" in rankloop(home, "judge", "run")
    # a model judge (README: `rankloop judge add NAME --model base`): the policy's base asked about every pair
    rankloop(home, "judge", "add", "self", "--model", "base")
    assert "judges wrote 12 rankings" in rankloop(home, "judge", "run")
    assert "asks base with comparison prompt v1:" in rankloop(home, "judge", "list")
    rankloop(home, "ppo", "--steps", "1", "--batch_prompts", "2", "--minibatch", "2", "--max_new_tokens", "4",
             "--sample_prompts", "2", "--device", "cpu", "--reward_source", "rules", "--rules_judge", "brief")  # fmt: skip
    with Session(make_engine(url)) as s:
        v3 = s.exec(select(PolicyVersion).where(PolicyVersion.version == 3)).one()
        assert v3.metrics["rules_scores"]["judge"] == "brief" and "rules" in v3.metrics["final"]
        assert v3.metrics["sample_scores"]["reward_model"] is None
