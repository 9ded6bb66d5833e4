"""Does labeling where the reward model is unsure save labels? One component by design (the reward stage and the
pre-generation worker's selection: rlhf/serve/pregen.py, rlhf/select/design.py, rlhf/select/selection.py), on the tiny in-process
model and a synthetic preference, so that curves with repeats fit in minutes on a CPU.

The preference: an answer is worth the sum of its judged words (great +2, good +1, fine +0.5, meh -0.5,
bad -1, awful -2). Half the candidate sets are coarse (each answer has its own judged words: wide gaps, learned
from few labels), half are fine (the same judged words, and "fine", "meh" or neither on top: gaps of 0.5-1, the
distinctions a reward model learns last). Then each answer past the first carries the judged words of an earlier
answer in its set with probability `--same` (0.45), since a policy's samples for one prompt are often alike:
v0's sets on bench/loop.py's instruction task are 16% all alike and 42% of their answer pairs tied
(bench/reward_instructions.py, 96 sets), this pool 14% and 40%. One simulated labeler (Gaussian noise 0.5) ranks
each chosen set through lease + submit.

The arms share the seeds, one stream of fresh candidate sets (as the generator writes them, prompt after prompt),
the reward models' settings (`--heads` score-head members, 1 by default as in the app; `--ensemble K` gives the
disagreement arm K models with their own adapters and seeds instead, `rankloop reward --ensemble`; with one member
of either kind there is nothing to disagree on and the `disagreement` arm is left out) and the first 32 sets:
`random` labels the stream in order (selection mode random); the others choose as the worker does in selection mode
uncertainty: for every batch of sets it keeps (the worker's batch) it writes `--oversample` candidates per kept set
(8, the most the admin's setting allows; the app's default is 2), scores them with the latest reward model through
the worker's scorer (an adapter on the shared base), keeps the most uncertain, `--random-share` (0.25, the default)
of them at random, and never labels the rest. `information` is what the worker reads from a model that saved its
score head's precision (the default: rlhf/select/design.py, the information a label adds, sets kept one after another, each
counted as known until the next model), `disagreement` how much the members disagree (rlhf/select/selection.py, BALD: what
it reads from a model with several members saved without the precision), `doubt` the spread of one head's mean
score. At every size (every 16 sets to 160, then 192 and 256) each arm trains its reward model as an admin round
does (rlhf/train/configs.py ROUND_EXPOSES): it continues the arm's latest model (`continue_from=latest`, 2 passes) on the
sets that model has not met and again on those it has (`--replay`, 1 as in the app; 0: the new ones only). `--fresh`
trains a fresh model on all the arm's sets at every size instead (`--epochs` 6 then: at 2 a fresh model on few sets
had taken too few steps, so the curve measured steps as much as sets; at 12 or 24 they overfit the noisy labels and
lose 0.02-0.06). Each model reports its accuracy on 400 held-out sets against the hidden preference, and chooses the
next sets. Target: the better selection arm reaches random's accuracy at 256 sets with at most 60% of the sets
(reported only where random's curve does not fall at its end: a fall makes any comparison with its last point
meaningless, and the RESULT line says `random_curve_settled=false`). One model's accuracy moves by 0.02-0.03 from
one size to the next, so a comparison needs repeats, and one run's 6 are not enough where the curves flatten: three
runs of one setting gave 44-90%, so a figure here is the mean of several runs (`--first-seed`); the share needed for
random's accuracy at every size (`*_share_by_size`) shows how much of a share is one point's luck.

At the default settings (the app's one-head reward model, continued as admin rounds do; random share 0.25,
oversample 8), `--arms information`, 18 repeats in three runs of 6 (`--first-seed` 0, 6, 12; 4.3 min each): random
0.863 (64) / 0.876 (80) / 0.894 (128) / 0.896 (160) / 0.904 (192) / 0.914 (256), information 0.874 / 0.898 / 0.921 /
0.912 / 0.911 / 0.935: ahead at every size from 48 sets (per repeat +0.017 over 80-256 sets, standard error 0.005),
0.49-0.82 of the sets random needs from 80 to 192, random's 256-set accuracy at 118 sets (46%; target 60%, met; the
three runs 39%, 50%, 45%). Both curves are nearly flat from 128 to 192 sets, so a share read where one reaches the
other's level is sensitive: a line fitted to each curve against log sets puts it at 74%. (The bench's default was 4
heads, for the disagreement arm, until this run; the one-head figures were looked at after those below.) At the
app's default oversample of 2 (`--oversample 2`, 18 repeats, 4.3-4.6 min a run): information 0.890 (80) / 0.898
(128) / 0.913 (192) / 0.926 (256), +0.008 per repeat (standard error 0.004), 0.58-0.94 of random's sets from 80 to
192 but 77% at 256 (runs 70.5%, 74%, 84%): choosing among 2 candidates per kept set saves fewer labels than among 8,
which costs 4 times the generation.

With 4 heads (`--heads 4`), continued, 18 repeats in three runs of 6 (4.5-4.8 min each): random 0.846 (64) / 0.858
(80) / 0.889 (128) / 0.893 (160) / 0.895 (192) / 0.908 (256), information 0.844 / 0.875 / 0.902 / 0.901 / 0.902 /
0.925: ahead from 80 sets on, 0.53-0.89 of the sets random needs from 80 to 192, random's 256-set accuracy at 207
sets (81%). The three runs gave 48%, 44% and 90%: both curves flatten from 128 to 192 sets, so where one crosses the
other's last point moves with each run (an earlier run of seeds 0-5 that only put the replayed sets in another order
before the shuffle: 72%). Replay, 4 heads, seeds 0-11: without it (`--replay 0`, 2.8 min a run) random 0.799 (64) /
0.839 (128) / 0.861 (160) / 0.889 (256) and information 0.783 / 0.855 / 0.866 / 0.911, against 0.839 / 0.886 / 0.885
/ 0.907 and 0.843 / 0.911 / 0.902 / 0.927 with it: a model continued on each round's sets alone forgets the earlier
ones (why the app replays them by default).

The figures below train a fresh model at every size (`--fresh`, 6 passes), the protocol before the bench followed
admin rounds, with 4 heads unless they say one (their commands need `--fresh --heads 4` added now). `--arms
information` (6 repeats, 8.7 min; random share 0.25, oversample 8): random 0.846 (64) / 0.833 / 0.864 / 0.867 /
0.882 (128) / 0.898 / 0.897 (160) / 0.915 (192) / 0.924 (256), information 0.843 / 0.857 / 0.884 / 0.884 / 0.888 /
0.909 / 0.924 / 0.924 / 0.938: random's 256-set accuracy at 160 sets (62%; target 60%, not met), 0.73-0.94 of the
sets random needs at each size from 80 on. Seeds 6-11 (`--first-seed 6`, 8.5 min): 158 sets (61.5%); over the 12
repeats random 0.891 (128) / 0.905 (160) / 0.926 (256), information 0.898 / 0.926 / 0.944, 159 sets (62%), 0.71-0.87
of random's sets from 96 to 192. With half the kept sets random (`--random-share 0.5`, 9.3 + 9.5 min): 141 sets
(55%) on seeds 0-5 but 172 (67%) on seeds 6-11, the half not looked at when this setting was tried; over the 12
repeats information 0.877 (80) / 0.908 (128) / 0.926 (160) / 0.940 (192) / 0.944 (256), 143 sets (56%, under the
target on the mean of 12), 0.69-0.81 of random's sets from 80 to 192: at those sizes no better than a quarter
random, so the 256-set figure's gain is within one point's luck. The members' disagreement at the same settings
(17.6 min, earlier): 196 sets (77%), doubt never; at `--oversample 2` 191 (75%); choosing only after 64 random sets
215. Without the random share (`--random-share 0 --arms information`, 13.1 min): information 0.860 (64) / 0.891 /
0.886 / 0.900 / 0.900 (128) / 0.907 / 0.926 (160) / 0.938 / 0.939, random's 256-set accuracy at 158 sets (62%),
0.59-0.78 of the sets random needs from 112 sets on; over 12 repeats (seeds 6-11 run by the same code as a
prototype, which matched it on seeds 0-5 to the last digit) random 0.856 (80) / 0.891 (128) / 0.905 (160) / 0.926
(256), information 0.895 / 0.911 / 0.923 / 0.944: 66% at 256, 0.61-0.79 from 112 on. With one head (`--fresh --heads
1`), 12 repeats (`--first-seed 0` and 6, 9.4 + 21.5 min): random learns better (0.947 at 256) and information leads
it at every size from 48 sets (0.904 vs 0.875 at 80, 0.917 vs 0.896 at 128, 0.941 vs 0.926 at 192, 0.951 vs 0.947 at
256): 0.59-0.83 of the sets random needs from 80 to 192 sets, 0.88 at 256, where both curves flatten near 0.95. A
prior of 500 instead of 1 (rlhf/select/design.py PRIOR; 500 is one over the trained head's weight variance) did worse:
0.71-0.86 from 80 sets on. The members' disagreement without the random share, 12 repeats: random's 256-set accuracy
at 169 sets (66%) but 0.75-0.86 of the sets from 96 to 192 (0.872 at 80, 0.901 at 128): 4 bootstrapped heads on one
adapter barely disagree (their spread of a pair's margin is 0.02-0.1 reward std against margins of 0.3-1.2) and
disagree most on pairs far apart, so (in a 2-seed look at what they chose) they pick wide distinctions and leave the
fine ones; with 8 heads 248 sets. Letting each batch choose also among up to 96 candidates earlier batches did not
keep (a reserve, at no extra generation), 12 repeats: 0.002 behind choosing among its own candidates (standard error
0.007, mean over 80-256 sets), so the worker does not.

`--arms oracle` adds a reference that no app can run: it keeps the candidates whose answer pairs the current model
orders against the hidden preference. How far it is ahead of random shows the room a selection measure has; it
never counts toward the target. (Measured before the pool had alike answers and before arms chose as the worker
does, from all the remaining sets at once: 0.01-0.015 ahead of random from 96 sets on, at random's 256-set
accuracy only at 220 sets.)

    .venv/bin/python bench/active_labeling.py [--sizes 32,48,64,...,160,192,256] [--repeats 6] [--heads 1]
        [--ensemble 1] [--fresh] [--replay 1] [--epochs 2] [--same 0.45] [--oversample 8] [--random-share 0.25]
        [--arms doubt,disagreement,information,oracle] [--plot bench/active_labeling.png]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import combinations, count, islice
from pathlib import Path
from typing import cast

import torch
from results import record_result  # bench/results.py: the line, kept in bench/results/
from simulate import SimulatedLabeler, label_waiting_sets
from sqlmodel import Session

from labeler.records.policies import ensure_initial_policy
from labeler.store.db import make_engine
from labeler.store.settings import MAX_OVERSAMPLE, Selection, set_labels_needed
from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.store.tables import id_of
from models.loading import load_base
from models.policy import PolicyPool
from models.tiny import save_tiny_checkpoint
from rlhf.select.design import Design
from rlhf.select.selection import PoolScorer, choose, disagreement, doubt
from rlhf.serve.pregen import PregenConfig
from rlhf.train import reward
from rlhf.train.configs import ROUND_EXPOSES, RewardConfig

FILLER = ["the", "quick", "brown", "jumps", "over", "lazy", "poem", "answer", "about", "very"]
TOPICS = ["sea", "sky", "fox", "dog", "tree", "moon", "rain", "bread"]
# words an answer is judged by, and what each is worth; "fine" and "meh" move it least (the fine distinctions)
WEIGHTS = {"great": 2.0, "good": 1.0, "fine": 0.5, "meh": -0.5, "bad": -1.0, "awful": -2.0}
BATCH = PregenConfig().batch_prompts  # sets the worker keeps per call
HELDOUT = 400
# chance that an answer carries the judged words of an earlier answer in its set: v0's sets on bench/loop.py's
# instruction task are 16% all alike, 42% of their answer pairs tied (bench/reward_instructions.py, 96 sets);
# 0.45 gives 14% and 40%, 0.5 gives 18% and 44%
SAME = 0.45
SELECTION_ARMS = ("doubt", "disagreement", "information")
ROUND_EPOCHS = cast(int, ROUND_EXPOSES["reward"][1]["epochs"])  # an admin round's reward passes
ORACLE = "oracle"  # a reference, not a selection an app can make: it reads the hidden preference


@dataclass(frozen=True)
class Candidate:
    messages: list[dict]
    texts: list[str]


def preference(text: str, finish_reason: str = "eos", instructions: Sequence[object] = ()) -> float:
    return sum(WEIGHTS.get(word.strip("."), 0.0) for word in text.split())


def _answer(rng: random.Random, judged: list[str]) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(3, 6))] + judged
    rng.shuffle(words)
    return " ".join(words) + "."


def make_candidate(i: int, rng: random.Random, same: float = SAME) -> Candidate:
    """One candidate set of 4 answers: coarse or fine (half each), then each answer past the first carries the
    judged words of an earlier one with probability `same` (its filler words stay its own)."""
    messages = [{"role": "user", "content": f"question {i}: tell me about the {rng.choice(TOPICS)}"}]
    if rng.random() < 0.5:  # coarse: each answer has its own judged words, the gaps are wide
        judged = [rng.choices(list(WEIGHTS), k=rng.randint(0, 3)) for _ in range(4)]
    else:  # fine: the same judged words, and one of fine / meh / neither on top
        shared = rng.choices(list(WEIGHTS), k=rng.randint(0, 2))
        extra = [["fine"], ["meh"], [], rng.choice([["fine"], ["meh"], ["fine", "fine"]])]
        judged = [shared + e for e in extra]
    for k in range(1, len(judged)):
        if rng.random() < same:
            judged[k] = judged[rng.randrange(k)]
    return Candidate(messages, [_answer(rng, j) for j in judged])


def accuracy(scores: Sequence[Sequence[float]], sets: Sequence[Candidate]) -> float:
    right = total = 0
    for s, c in zip(scores, sets, strict=True):
        truth = [preference(t) for t in c.texts]
        for a, b in combinations(range(len(truth)), 2):
            if truth[a] != truth[b]:
                total += 1
                right += (s[a] > s[b]) == (truth[a] > truth[b])
    return right / total


@dataclass(frozen=True)
class Training:
    """How every arm's reward models train: the tiny checkpoint, score-head members, passes over the sets, the
    models in the ensemble (only the disagreement arm trains the extra ones: the first is the same model either
    way, and the others only choose), and whether each size's model continues the last one (an admin round's
    default: on the sets it has not seen and `replay` of those it has) or starts afresh on all of them."""

    checkpoint: str
    heads: int
    epochs: int
    ensemble: int = 1
    information: bool = False  # save the head's precision (what the information arm reads)
    continued: bool = False
    replay: float = RewardConfig().replay


class Arm:
    """One arm's store: the sets it chose so far, ranked; trains a fresh reward model on them."""

    def __init__(self, folder: Path, training: Training, seed: int):
        folder.mkdir()
        self.folder, self.training, self.seed = folder, training, seed
        self.url = f"sqlite:///{folder / 'store.db'}"
        self.engine = make_engine(self.url)
        with Session(self.engine) as s:
            self.version_id = ensure_initial_policy(session=s, base_model=training.checkpoint).id
            set_labels_needed(session=s, k=1)
        self.labeler = SimulatedLabeler("sim", noise=0.5, seed=seed, preference=preference)

    def label(self, chosen: Sequence[Candidate]) -> None:
        with Session(self.engine) as s:
            for c in chosen:
                prompt = get_or_add_prompt(session=s, messages=c.messages)
                add_completion_set(session=s, prompt_id=id_of(prompt), completions=[CompletionIn(t) for t in c.texts], policy_version_id=self.version_id, labels_needed=1)  # fmt: skip
        label_waiting_sets(self.engine, [self.labeler])

    def train(self) -> Path:
        torch.manual_seed(self.seed)
        t = self.training
        config = RewardConfig(model=t.checkpoint, home=str(self.folder), db=self.url, epochs=t.epochs, learning_rate=1e-3, eval_fraction=0.0, max_length=64, device="cpu", seed=self.seed, heads=t.heads, ensemble=t.ensemble, information=t.information, continue_from="latest" if t.continued else None, replay=t.replay)  # fmt: skip
        return reward.run(config).path


def wrong_pairs(scores: Sequence[float], candidate: Candidate) -> int:
    """How many of a set's answer pairs the model orders against the hidden preference (what `oracle` picks by)."""
    truth = [preference(t) for t in candidate.texts]
    return sum(
        truth[a] != truth[b] and (scores[a] > scores[b]) != (truth[a] > truth[b])
        for a, b in combinations(range(len(truth)), 2)
    )


def uncertain(arm_name: str, members: list[list[list[float]]], remaining: list[Candidate]) -> list[float]:
    """Each remaining candidate's uncertainty by the arm's measure (`oracle`: the pairs the model gets wrong)."""
    if arm_name == ORACLE:
        return [wrong_pairs([sum(a) / len(a) for a in s], c) for s, c in zip(members, remaining, strict=True)]
    if arm_name == "disagreement":
        return [disagreement(s) for s in members]
    return [doubt([sum(a) / len(a) for a in s]) for s in members]


@dataclass(frozen=True)
class Task:
    """The candidate pool's shape (`same`) and the admin's selection settings the worker follows."""

    same: float
    selection: Selection


def candidates(rng: random.Random, same: float) -> Iterator[Candidate]:
    """Fresh candidate sets, as the generator writes them for one prompt after another."""
    for i in count():
        yield make_candidate(i, rng, same)


def selected(
    arm_name: str,
    folder: str,
    stream: Iterator[Candidate],
    wanted: int,
    scorer: PoolScorer,
    task: Task,
    rng: random.Random,
    design: Design | None = None,
) -> list[Candidate]:
    """`wanted` sets as the pre-generation worker picks them (rlhf/serve/pregen.py): per batch of `BATCH` kept sets it
    writes `oversample` candidates for each, scores them with the latest reward model and keeps the most
    uncertain (with a `design`: the most informative, one after another), `random_share` of them at random;
    the rest are never labeled."""
    chosen: list[Candidate] = []
    share = task.selection.random_share
    while len(chosen) < wanted:
        keep = min(BATCH, wanted - len(chosen))
        fresh = list(islice(stream, keep * task.selection.oversample))
        sets = [(c.messages, c.texts) for c in fresh]
        if design is not None:
            picks = design.choose_sets(scorer, folder, sets, keep=keep, random_share=share, rng=rng)
        else:
            doubts = uncertain(arm_name, scorer.score_members(folder, sets), fresh)
            picks = choose(doubts, keep=keep, random_share=share, rng=rng)
        chosen += [fresh[c.index] for c in picks]
    return chosen


def curve(
    tmp: Path, arm_name: str, sizes: list[int], seed: int, scorer: PoolScorer, training: Training, task: Task
) -> list[float]:
    """One arm's accuracy at every size; every arm of a repeat sees the same held-out sets and the same stream of
    candidates (random takes them in order, the others choose among them)."""
    test = list(islice(candidates(random.Random(-1 - seed), task.same), HELDOUT))
    stream = candidates(random.Random(seed), task.same)
    own = replace(
        training,
        ensemble=training.ensemble if arm_name == "disagreement" else 1,
        information=arm_name == "information",
    )
    arm = Arm(tmp / f"{arm_name}-{seed}", own, seed)
    arm.label(list(islice(stream, sizes[0])))
    points = []
    choice_rng = random.Random(seed + 2)
    for k, size in enumerate(sizes):
        folder = str(arm.train())
        points.append(accuracy(scorer.score(folder, [(c.messages, c.texts) for c in test]), test))
        if k + 1 == len(sizes):
            break
        wanted = sizes[k + 1] - size
        if arm_name == "random":
            arm.label(list(islice(stream, wanted)))
        else:
            design = Design.load(Path(folder)) if own.information else None
            arm.label(selected(arm_name, folder, stream, wanted, scorer, task, choice_rng, design))
    return points


def sets_to_reach(target: float, sizes: list[int], points: list[float]) -> float | None:
    """Sets at which a curve first reaches `target`, interpolated linearly between measured sizes; None if never."""
    if points[0] >= target:
        return sizes[0]
    for k in range(1, len(sizes)):
        if points[k] >= target:
            low, high = points[k - 1], points[k]
            return sizes[k - 1] + (sizes[k] - sizes[k - 1]) * (target - low) / (high - low)
    return None


def shares_by_size(sizes: list[int], means: dict[str, list[float]], arm: str) -> dict[int, float | None]:
    """For every size past the first: the share of it that `arm` needs to reach random's accuracy there (None:
    never). One point of random's curve moves by 0.01-0.02 between runs; the shares at several sizes show how
    much of a lead is a single point's luck."""
    out: dict[int, float | None] = {}
    for k, size in enumerate(sizes[1:], start=1):
        n = sets_to_reach(means["random"][k], sizes, means[arm])
        out[size] = None if n is None else n / size
    return out


def plot(path: Path, sizes: list[int], means: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, values in means.items():
        ax.plot(sizes, values, marker="o", label=arm)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("labeled sets")
    ax.set_ylabel("held-out pairwise accuracy (hidden preference)")
    ax.set_title("Reward model accuracy by how the next sets are chosen")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args() -> tuple[argparse.Namespace, Task, list[str]]:
    """The command line, checked: its options, the selection settings the worker follows, and the arms to run."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="32,48,64,80,96,112,128,144,160,192,256")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of the first repeat (another run's repeats: new seeds)",
    )
    parser.add_argument(
        "--heads",
        type=int,
        default=RewardConfig().heads,
        help="score-head members of every reward model (the app's default 1; the disagreement arm needs 2 or more)",
    )
    parser.add_argument(
        "--ensemble", type=int, default=1, help="reward models in the disagreement arm's ensemble"
    )
    parser.add_argument(
        "--same",
        type=float,
        default=SAME,
        help="chance an answer carries an earlier answer's judged words (0: every answer draws its own)",
    )
    parser.add_argument(
        "--oversample",
        type=int,
        default=MAX_OVERSAMPLE,
        help="candidate sets the worker writes per set it keeps (the admin's setting, 1-8; the app's default 2)",
    )
    parser.add_argument(
        "--random-share",
        type=float,
        default=Selection().random_share,
        help="share of kept sets drawn at random",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="reward-model passes over its sets (2, an admin round's; 6 fresh)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="each size trains a fresh model on all its sets instead of continuing the last, as admin rounds do",
    )
    parser.add_argument(
        "--replay",
        type=float,
        default=RewardConfig().replay,
        help="share of the sets met before that a continued model trains on again (0: the new ones only)",
    )
    parser.add_argument(
        "--arms", default="disagreement,information", help="selection arms to compare with random"
    )
    parser.add_argument("--plot", default=str(Path(__file__).with_suffix(".png")))
    args = parser.parse_args()
    if args.epochs is None:
        args.epochs = 6 if args.fresh else ROUND_EPOCHS
    try:
        chosen = Selection("uncertainty", args.random_share, args.oversample).check()
    except ValueError as e:
        parser.error(str(e))
    wanted = args.arms.split(",")
    unknown = set(wanted) - {"random", *SELECTION_ARMS, ORACLE}
    if unknown:
        parser.error(
            f"--arms: unknown arm(s) {', '.join(sorted(unknown))}; use doubt, disagreement, information, oracle"
        )
    # one member has nothing to disagree with: the disagreement arm needs --heads or --ensemble 2 or more
    several = args.heads > 1 or args.ensemble > 1
    arms = ["random"] + [a for a in SELECTION_ARMS if a in wanted and (a != "disagreement" or several)]
    arms += [ORACLE] if ORACLE in wanted else []
    return args, Task(args.same, chosen), arms


def main() -> None:
    args, task, arms = parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    start = time.perf_counter()
    curves: dict[str, list[list[float]]] = {arm: [] for arm in arms}
    for repeat in range(args.first_seed, args.first_seed + args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = str(save_tiny_checkpoint(Path(tmp) / "tiny"))
            base, tokenizer = load_base(checkpoint, home=Path(tmp), device="cpu")
            scorer = PoolScorer(PolicyPool(base, tokenizer), max_length=64)
            training = Training(
                checkpoint,
                args.heads,
                args.epochs,
                args.ensemble,
                continued=not args.fresh,
                replay=args.replay,
            )
            for arm in curves:
                curves[arm].append(curve(Path(tmp), arm, sizes, repeat, scorer, training, task))
        print(
            json.dumps({"repeat": repeat, **{a: [round(x, 4) for x in c[-1]] for a, c in curves.items()}}),
            flush=True,
        )
    means = {a: [statistics.fmean(c[i] for c in cs) for i in range(len(sizes))] for a, cs in curves.items()}
    print("labeled sets  " + "  ".join(f"{s:>6d}" for s in sizes))
    for arm, values in means.items():
        print(f"{arm:12s}  " + "  ".join(f"{v:6.3f}" for v in values))
    target = means["random"][-1]
    needed = {a: sets_to_reach(target, sizes, means[a]) for a in arms[1:]}
    shares = {a: None if n is None else n / sizes[-1] for a, n in needed.items()}
    best = min((s for a, s in shares.items() if s is not None and a != ORACLE), default=None)
    # the comparison means something only where random selection's accuracy still holds at its largest size
    settled = target >= max(means["random"]) - 0.01
    by_size = {a: shares_by_size(sizes, means, a) for a in arms[1:]}
    print("share of the sets random needs for its accuracy at each size (- : never)")
    for arm, shares_at in by_size.items():
        print(
            f"{arm:12s}  "
            + "  ".join(f"{s:>3d}:{'-' if v is None else f'{v:.2f}'}" for s, v in shares_at.items())
        )
    plot(Path(args.plot), sizes, means)
    record_result(
        f"RESULT sizes={args.sizes} repeats={args.repeats} first_seed={args.first_seed} same={args.same} "
        f"oversample={args.oversample} random_share={args.random_share} heads={args.heads} "
        f"ensemble={args.ensemble} epochs={args.epochs} continued={str(not args.fresh).lower()} replay={args.replay} "
        + " ".join(f"{a}_{s}={v:.4f}" for a, vs in means.items() for s, v in zip(sizes, vs, strict=True))
        + "".join(
            f" {a}_sets_to_match_random_{sizes[-1]}={'never' if n is None else round(n)}"
            + f" {a}_share={'n/a' if shares[a] is None else round(shares[a], 3)}"  # type: ignore[arg-type]
            + f" {a}_share_by_size="
            + "/".join(f"{s}:{'never' if v is None else round(v, 2)}" for s, v in by_size[a].items())
            for a, n in needed.items()
        )
        + f" random_curve_settled={str(settled).lower()}"
        + f" target_met={str(settled and best is not None and best <= 0.6).lower()}"
        + f" plot={args.plot} minutes={(time.perf_counter() - start) / 60:.1f}"
    )


if __name__ == "__main__":
    main()
