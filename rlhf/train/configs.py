"""The training stages' settings and the one registry of stages, torch-free: the command line (`rankloop
NAME`), the job runner and the admin tab's forms all read `STAGES`, and importing this module loads no model
library (the admin tab builds its forms from these dataclasses).

    from rlhf.train.configs import STAGES, RewardConfig
    STAGES["reward"].module      # "rlhf.train.reward": what `rankloop reward` and a reward job run (python -m ...)
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal, NamedTuple

from labeler.labels.pairs import PairSettings


class Range(NamedTuple):
    """The values a numeric setting admits (inclusive bounds; `low_open` leaves the low bound itself out)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def admits(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def text(self) -> str:
        low = None if self.low is None else f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else f"at most {self.high:g}"
        return " and ".join(x for x in (low, high) if x)


# The values each numeric setting admits, by field name: a name means the same in every stage (a learning rate
# is a learning rate), and a round's `<stage>_<name>` field takes its stage's range. Checked when a config is
# made, so flags, YAML and the admin forms are all refused before anything loads.
RANGES: dict[str, Range] = {
    "epochs": Range(1, 1000),
    "learning_rate": Range(0, 1, low_open=True),
    "warmup_ratio": Range(0, 1),
    "lora_r": Range(1, 1024),
    "lora_alpha": Range(1),
    "batch_sets": Range(1),
    "batch_prompts": Range(1),
    "batch_size": Range(1),
    "minibatch": Range(1),
    "grad_accum": Range(1),
    "max_length": Range(8),
    "max_new_tokens": Range(1),
    "eval_fraction": Range(0, 0.9),
    "replay": Range(0, 1),
    "center_rewards": Range(0),
    "tie_strength": Range(0, low_open=True),
    "min_agreement": Range(0, 1),
    "heads": Range(1, 16),
    "ensemble": Range(1, 8),
    "max_pairs": Range(1),
    "steps": Range(1),
    "ppo_epochs": Range(1, 100),
    "group_size": Range(2, 64),
    "temperature": Range(0, 10),
    "kl_coef": Range(0),
    "target_kl": Range(0, low_open=True),
    "kl_horizon": Range(1),
    "overopt_patience": Range(1),
    "overopt_window": Range(1),
    "gamma": Range(0, 1),
    "lam": Range(0, 1),
    "clip": Range(0, 1, low_open=True),
    "vf_coef": Range(0),
    "vf_clip": Range(0, low_open=True),
    "ent_coef": Range(0),
    "max_grad_norm": Range(0, low_open=True),
    "stop_kl": Range(0, low_open=True),
    "reward_clip": Range(0, low_open=True),
    "beta": Range(0, low_open=True),
    "pair_weight": Range(0),
    "sft_weight": Range(0),
    "kl_weight": Range(0),
    "label_smoothing": Range(0, 0.49),
    "length_weight": Range(0),
    "min_margin": Range(0, 63),
    "tail_average": Range(0, 1),
    "rules_weight": Range(0, low_open=True),
    "kl_budget": Range(0, low_open=True),
    "kl_budget_prompts": Range(1, 1000),
    "kl_budget_samples": Range(1, 64),
    "kl_budget_temperature": Range(0, 10, low_open=True),
    "sample_prompts": Range(0, 1000),
    "log_every": Range(1),
    "seed": Range(0),
}


def field_range(config_cls: type, name: str) -> Range | None:
    """The range of one field of a stage or round config (None: any value of its type)."""
    if config_cls is RoundConfig and name not in RANGES:
        prefix, _, rest = name.partition("_")
        return RANGES.get(rest) if prefix in ROUND_EXPOSES else None
    return RANGES.get(name)


class RangeError(ValueError):
    """A setting out of its range; `field`, `value` and `allowed` let a form name it by its label."""

    def __init__(self, field_name: str, value: float, allowed: Range):
        super().__init__(f"{field_name} = {value:g} is out of range: it must be {allowed.text()}")
        self.field, self.value, self.allowed = field_name, value, allowed


def check_ranges(config: Any) -> None:
    """RangeError naming the first field whose value is out of its range (None, where a field allows it, passes)."""
    for f in fields(config):
        value, allowed = getattr(config, f.name), field_range(type(config), f.name)
        if allowed is None or value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not allowed.admits(value):
            raise RangeError(f.name, value, allowed)


PRECISION_HELP = (
    "auto: bf16 autocast on a GPU and on a CPU with bf16 in hardware (AVX512-BF16: 1.5x faster there), fp32 on "
    "other CPUs (which emulate bf16, several times slower); no: fp32; bf16"
)

# The KL budget's settings, shared by the policy optimisers (PPO and DPO): (type, default, help) by field name.
KL_BUDGET_FIELDS: dict[str, tuple[Any, object, str]] = {
    "kl_budget": (
        float | None,
        None,
        "after training, scale the adapter's update back (toward v0, or the parent: kl_budget_from) until the new "
        "version's KL from v0 (on its own answers to training prompts) is at most this many nats; none: no budget",
    ),
    "kl_budget_from": (
        Literal["base", "parent"],
        "base",
        "what the KL budget scales back: base, the whole adapter toward v0 (earlier rounds' learning too); "
        "parent, only this round's update toward the parent version's adapter, keeping what earlier rounds "
        "learned (a round that starts from a fresh adapter scales toward v0 either way)",
    ),
    "kl_budget_prompts": (int, 32, "training prompts the KL budget is measured on"),
    "kl_budget_samples": (int, 2, "answers sampled per prompt for the KL budget"),
    "kl_budget_temperature": (
        float,
        1.0,
        "sampling temperature of the KL budget's answers and log-probabilities: 1 bounds the KL between the two "
        "models; the generator's (serve --temperature, 0.8 by default) bounds that of the answers labelers see",
    ),
}


def _with_kl_budget(cls: type) -> type:
    """Before `@dataclass`: add the KL budget's fields (`KL_BUDGET_FIELDS`) after `cls`'s own."""
    for name, (annotation, default, help_text) in KL_BUDGET_FIELDS.items():
        cls.__annotations__[name] = annotation
        setattr(cls, name, field(default=default, metadata={"help": help_text}))
    return cls


@dataclass
class RewardConfig:
    """Settings of one reward round (the admin tab's form and the command line are made from these fields)."""

    model: str = field(
        default="default", metadata={"help": "base model: 'default', a Hub id or a local path"}
    )
    home: str = field(default="runs", metadata={"help": "rankloop home folder"})
    db: str | None = field(default=None, metadata={"help": "database URL (default: the home's SQLite file)"})
    trainer: Literal["ranking", "pairs", "trl"] = field(
        default="ranking", metadata={"help": "ranking batches, per-pair, or trl.RewardTrainer"}
    )
    full_finetune: bool = field(
        default=False, metadata={"help": "train all weights instead of a LoRA adapter"}
    )
    continue_from: str | None = field(
        default=None,
        metadata={
            "help": "keep training an earlier reward model ('latest' or a name such as r2): start from its "
            "adapter and head, train on the sets it has not seen (new, or ranked again since) and `replay` of "
            "those it has, and evaluate on every held-out set; 'latest' trains a new one where none fits"
        },
    )
    replay: float = field(
        default=1.0,
        metadata={
            "help": "continuing: the share of the training sets the earlier model has met that it trains on "
            "again with the new ones, drawn at random (1: all; 0: the new sets only, the fastest, but a model "
            "trained on one round's sets after another forgets: bench/active_labeling.py --replay 0)"
        },
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (a new adapter)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    epochs: int = field(default=1, metadata={"help": "passes over the training sets"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    lr_schedule: Literal["linear", "cosine", "constant"] = field(
        default="constant", metadata={"help": "learning-rate schedule (the trl baseline uses the same)"}
    )
    warmup_ratio: float = field(default=0.0, metadata={"help": "share of steps with a linear warm-up"})
    batch_sets: int = field(
        default=4,
        metadata={"help": "ranked sets per optimizer step over all processes (pairs for per-pair paths)"},
    )
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    mixed_precision: Literal["auto", "no", "bf16"] = field(
        default="auto",
        metadata={"help": PRECISION_HELP},
    )
    max_length: int = field(
        default=384, metadata={"help": "tokens per prompt+response, truncated from the left"}
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "share of prompts held out (fixed per prompt across rounds)"}
    )
    heldout_sources: list[str] | None = field(
        default=None,
        metadata={
            "help": "hold out the prompts of sets imported from these files (instead of a hashed share)"
        },
    )
    use_margin: bool = field(
        default=False, metadata={"help": "subtract the rank-difference margin in the loss"}
    )
    center_rewards: float = field(default=0.0, metadata={"help": "coefficient of the reward-centering term"})
    keep_ties: bool = field(
        default=False,
        metadata={
            "help": "tied answers become tie pairs, trained with Davidson's tie likelihood (else dropped)"
        },
    )
    tie_strength: float = field(
        default=1.0,
        metadata={"help": "Davidson's nu: how likely a tie is between equal answers (with keep_ties)"},
    )
    none_acceptable: Literal["exclude", "below_reference"] = field(
        default="exclude",
        metadata={
            "help": "sets marked 'none acceptable': left out, or every answer trained to score below a "
            "reference at 0 (an average answer)"
        },
    )
    flagged: Literal["drop", "reject"] = field(
        default="drop", metadata={"help": "what flagged completions become"}
    )
    labeler_weights: Literal["equal", "reliability"] = field(
        default="equal",
        metadata={
            "help": "equal: every labeler's vote counts once; reliability: votes weigh by each labeler's "
            "estimated accuracy (one-coin Dawid-Skene over all labels: below 0.5 counts reversed, 0.5 not at "
            "all) and each pair by how sure the weighted consensus is"
        },
    )
    min_agreement: float = field(default=0.0, metadata={"help": "drop consensus pairs below this agreement"})
    heads: int = field(
        default=1,
        metadata={
            "help": "score-head members (1-16): the reward is their mean; each member past the first trains on "
            "its own bootstrap share of the sets, and their disagreement is what selection mode 'disagreement' "
            "labels next"
        },
    )
    ensemble: int = field(
        default=1,
        metadata={
            "help": "reward models trained in all (1-8): members past the first each have their own adapter, "
            "head and seed, are saved under members/ in the model's folder, and serve only uncertainty "
            "selection, which labels next where they disagree (training takes this many times as long); PPO "
            "reads the first"
        },
    )
    information: bool = field(
        default=True,
        metadata={
            "help": "save the score head's precision over the labeled sets (information.pt, one pass over "
            "them): uncertainty selection then keeps the sets a label teaches most (rlhf/select/design.py); without "
            "it, it reads the heads' disagreement or one head's doubt"
        },
    )
    include_imported: bool = field(default=True, metadata={"help": "also train on imported pairs"})
    normalize: bool = field(
        default=True, metadata={"help": "store held-out mean/std so PPO sees unit-scale rewards"}
    )
    max_pairs: int | None = field(default=None, metadata={"help": "cap on training sets (quick runs)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    log_every: int = field(default=5, metadata={"help": "steps between metric points"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "where to train"})

    def __post_init__(self) -> None:
        check_ranges(self)
        reward_rules(self)

    def pair_settings(self) -> PairSettings:
        return PairSettings(keep_ties=self.keep_ties, flagged=self.flagged, min_agreement=self.min_agreement)


def reward_rules(config: RewardConfig) -> None:
    """The reward run's cross-field rules, checked when the config is made, so flags, a YAML file and the admin
    form are refused alike, before a job row exists or a model loads."""
    if config.ensemble > 1 and (config.trainer == "trl" or config.full_finetune):
        raise ValueError(
            "ensemble members are LoRA adapters trained by rankloop's loop: use --ensemble 1 with "
            "--trainer trl or --full-finetune"
        )
    if config.trainer == "trl" and config.heads != 1:
        raise ValueError(
            "trl's RewardTrainer trains one score head: use --trainer ranking or pairs with --heads"
        )
    if config.trainer == "trl" and (
        config.keep_ties or config.none_acceptable != "exclude" or config.labeler_weights != "equal"
    ):
        raise ValueError(
            "trl's RewardTrainer takes unweighted strict pairs only: use --trainer ranking or pairs with "
            "keep_ties, none_acceptable=below_reference or labeler_weights=reliability"
        )
    if config.keep_ties and config.labeler_weights != "equal":
        raise ValueError("labeler_weights=reliability weighs strict votes only: turn keep_ties off")


@dataclass
@_with_kl_budget
class PPOConfig:
    """Settings of one PPO round (the admin tab's form and the command line are made from these fields)."""

    home: str = field(default="runs", metadata={"help": "rankloop home folder"})
    db: str | None = field(default=None, metadata={"help": "database URL (default: the home's SQLite file)"})
    reward_model: str | None = field(
        default=None, metadata={"help": "reward model name (default: the newest)"}
    )
    reward_source: Literal["model", "rules", "model+rules"] = field(
        default="model",
        metadata={
            "help": "what scores each answer: the reward model; a rule judge's checks met (rules_judge), no reward "
            "model needed; or the reward model plus rules_weight x the checks met"
        },
    )
    rules_judge: str | None = field(
        default=None,
        metadata={
            "help": "with reward_source rules: the rule judge whose checks score answers (Admin > Judges)"
        },
    )
    rules_weight: float = field(
        default=1.0, metadata={"help": "with reward_source model+rules: the weight of one check met"}
    )
    steps: int = field(default=16, metadata={"help": "PPO iterations (rollout + update)"})
    batch_prompts: int = field(default=8, metadata={"help": "prompts per rollout, over all processes"})
    minibatch: int = field(default=4, metadata={"help": "sequences per gradient step, over all processes"})
    grad_accum: int = field(default=1, metadata={"help": "gradient accumulation steps"})
    ppo_epochs: int = field(default=2, metadata={"help": "passes over each rollout"})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate"})
    max_new_tokens: int = field(default=48, metadata={"help": "response length cap"})
    temperature: float = field(
        default=1.0, metadata={"help": "rollout sampling temperature (0: greedy, to compare runs)"}
    )
    kl_coef: float = field(default=0.05, metadata={"help": "initial KL coefficient"})
    adaptive_kl: bool = field(default=True, metadata={"help": "adapt the coefficient toward target_kl"})
    target_kl: float = field(default=4.0, metadata={"help": "target sequence KL for the adaptive controller"})
    kl_horizon: int | None = field(
        default=None,
        metadata={
            "help": "episodes over which the adaptive controller closes its error (default: an eighth of the "
            "round's steps x batch_prompts, so the coefficient can move about 5x within one round)"
        },
    )
    gold: Literal["none", "instructions"] = field(
        default="none",
        metadata={
            "help": "a gold judge scored on every rollout next to the reward model, for the over-optimisation "
            "monitor: instructions, the prompt's verifiable instructions met, then whether the answer ends well"
        },
    )
    overopt_stop: bool = field(
        default=True,
        metadata={
            "help": "with a gold judge: stop when gold falls for overopt_patience checks while reward rises"
        },
    )
    overopt_patience: int = field(
        default=3, metadata={"help": "checks in a row of falling gold before stopping"}
    )
    overopt_window: int = field(default=2, metadata={"help": "steps averaged into one monitor check"})
    carry_kl_coef: bool = field(
        default=True,
        metadata={
            "help": "start from the coefficient the parent version's PPO round ended with (else kl_coef)"
        },
    )
    kl_estimator: Literal["k1", "k3"] = field(default="k1", metadata={"help": "per-token KL estimator"})
    advantage: Literal["gae", "group"] = field(
        default="gae",
        metadata={
            "help": "gae: a value head's estimates (classic PPO); group: group_size answers per prompt, each "
            "against the mean of the others to the same prompt (RLOO; no value head)"
        },
    )
    group_size: int = field(
        default=4,
        metadata={
            "help": "answers sampled per prompt with advantage=group (the rollout holds "
            "batch_prompts x group_size answers)"
        },
    )
    gamma: float = field(default=1.0, metadata={"help": "GAE discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss coefficient"})
    vf_clip: float = field(default=0.2, metadata={"help": "value clip range"})
    ent_coef: float = field(default=0.0, metadata={"help": "entropy bonus coefficient"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping"})
    stop_kl: float = field(
        default=0.1, metadata={"help": "stop an epoch when approximate KL (new vs old) passes this"}
    )
    no_eos_penalty: float | None = field(
        default=-1.0, metadata={"help": "added to the score of responses that hit the cap"}
    )
    length_debias: bool = field(
        default=False,
        metadata={
            "help": "take the reward model's linear trend in answer length (least squares over every rollout "
            "so far) out of its scores, so a reward that learned 'shorter is better' from its labels does not "
            "train every answer shorter"
        },
    )
    reward_clip: float = field(default=5.0, metadata={"help": "clip normalised scores to +-this"})
    whiten_advantages: bool = field(default=True, metadata={"help": "whiten advantages per rollout"})
    reference: Literal["initial", "previous"] = field(
        default="initial", metadata={"help": "KL against the loop's initial model or the parent version"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank for a new policy adapter"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    make_current: bool = field(default=True, metadata={"help": "make the new version current when done"})
    parent_version: int | None = field(
        default=None,
        metadata={"help": "go on from this version instead of the current one (a round's SFT stage)"},
    )
    sample_prompts: int = field(default=4, metadata={"help": "eval prompts sampled before and after"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "where to train"})
    log_every: int = field(default=1, metadata={"help": "steps between metric points"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.reward_source != "model" and not self.rules_judge:
            raise ValueError(f"reward_source={self.reward_source} needs rules_judge: a rule judge's name")

    @property
    def uses_reward_model(self) -> bool:
        return self.reward_source != "rules"

    @property
    def answers_per_prompt(self) -> int:
        """Answers sampled to each prompt of a rollout: a group with group advantages, else one."""
        return self.group_size if self.advantage == "group" else 1


@dataclass
@_with_kl_budget
class DPOConfig:
    home: str = field(default="runs", metadata={"help": "rankloop home folder"})
    db: str | None = field(default=None, metadata={"help": "database URL (default: the home's SQLite file)"})
    trainer: Literal["sets", "trl"] = field(
        default="sets",
        metadata={
            "help": "sets: each ranked set's answers run once, DPO's loss over its pairs; trl: trl.DPOTrainer "
            "on the pairs (each answer runs once per pair it is in)"
        },
    )
    epochs: int = field(default=1, metadata={"help": "passes over the pairs"})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate"})
    beta: float = field(
        default=0.1, metadata={"help": "DPO temperature (strength of the pull toward the reference)"}
    )
    pair_weight: float = field(
        default=1.0,
        metadata={"help": "weight of DPO's loss over the pairs (trainer=sets; 0 with sft_weight: SFT alone)"},
    )
    sft_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the per-token negative log-likelihood of each set's best answers (trainer=sets; "
            "RPO): keeps the policy on the answers labelers picked; alone, rejection-sampling fine-tuning"
        },
    )
    kl_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the KL from the reference, each answer's exact per-token KL summed over its tokens "
            "and averaged over the step's answers (trainer=sets): holds the policy near v0 along the labeled "
            "answers wherever the preferences do not move it"
        },
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={
            "help": "the share of labels taken to be wrong (conservative DPO): each pair's loss stops falling at "
            "a finite margin, so noisy pairs no longer drive the policy away from the reference without end"
        },
    )
    length_weight: float = field(
        default=0.0,
        metadata={
            "help": "R-DPO's alpha (Park et al. 2024; trainer=sets): alpha x (chosen's tokens - rejected's "
            "tokens) is added to each pair's implicit-reward margin, so the part of a preference that answer "
            "length explains no longer trains the policy to write longer (or shorter) answers"
        },
    )
    min_margin: float = field(
        default=0.0,
        metadata={
            "help": "train only on consensus pairs whose agreeing labelers put them at least this many ranks apart "
            "on average (2 of a set of 4: top against third or last, second against last), so pairs of answers "
            "a labeler finds alike, ordered by chance, spend no KL; the held-out evaluation keeps every pair"
        },
    )
    tail_average: float = field(
        default=0.0,
        metadata={
            "help": "share of the last steps whose adapter weights are averaged into the trained one (trainer=sets; "
            "Polyak-Ruppert tail averaging): 0 keeps the last step's; 0.5 averages the second half, so the steps' "
            "noise, which costs KL from v0 and teaches nothing, partly cancels"
        },
    )
    batch_size: int = field(default=4, metadata={"help": "pairs per step, over all processes (trainer=trl)"})
    batch_sets: int = field(
        default=1, metadata={"help": "ranked sets per step, over all processes (trainer=sets)"}
    )
    max_length: int = field(default=384, metadata={"help": "tokens per prompt+response"})
    mixed_precision: Literal["auto", "no", "bf16"] = field(
        default="auto", metadata={"help": PRECISION_HELP + " (trainer=sets)"}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    include_imported: bool = field(default=False, metadata={"help": "also use imported pairs"})
    data: Literal["all", "parent"] = field(
        default="all",
        metadata={
            "help": "all: every ranked set's pairs; parent: only sets the parent version wrote (on-policy, "
            "iterative DPO: each round learns from answers of the version it starts from)"
        },
    )
    replay: float = field(
        default=1.0,
        metadata={
            "help": "with data=all: train on every set the parent version wrote and this share of the earlier "
            "sets (other versions' answers), drawn at random each round; 1: every set, 0: as data=parent. A "
            "round's update is scaled back to its KL budget anyway: replaying fewer old sets spends fewer steps "
            "on pairs its parent has already learned"
        },
    )
    start_from: Literal["parent", "base"] = field(
        default="parent",
        metadata={
            "help": "parent: continue the parent version's adapter (each round adds to the last); base: a fresh "
            "adapter on the base model (v0), so with data=all each version is DPO on every set so far and its KL "
            "from v0 does not compound from round to round"
        },
    )
    eval_fraction: float = field(
        default=0.1,
        metadata={
            "help": "share of prompts held out of training (the reward model's split, fixed per prompt): the "
            "trained policy's implicit reward is scored on their pairs (heldout_accuracy)"
        },
    )
    make_current: bool = field(default=True, metadata={"help": "make the new version current when done"})
    parent_version: int | None = field(
        default=None,
        metadata={"help": "go on from this version instead of the current one (a round's SFT stage)"},
    )
    sample_prompts: int = field(default=4, metadata={"help": "eval prompts sampled before and after"})
    max_new_tokens: int = field(
        default=48,
        metadata={"help": "answer length cap of the before/after samples and the KL budget's answers"},
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "where to train"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.pair_weight == 0 and self.sft_weight == 0:
            raise ValueError("pair_weight and sft_weight are both 0: nothing to train on; set either above 0")
        if self.trainer == "trl" and (
            self.pair_weight != 1
            or self.sft_weight
            or self.kl_weight
            or self.length_weight
            or self.tail_average
        ):
            raise ValueError(
                "trainer=trl trains DPO's loss alone: use trainer=sets for pair_weight / sft_weight / kl_weight / "
                "length_weight / tail_average"
            )


@dataclass
class SFTConfig:
    """Supervised fine-tuning of the current policy's LoRA on the best answers (rlhf/train/sft.py)."""

    home: str = field(default="runs", metadata={"help": "rankloop home folder"})
    db: str | None = field(default=None, metadata={"help": "database URL (default: the home's SQLite file)"})
    store: bool = field(
        default=True,
        metadata={
            "help": "train on the store's best answers: labelers' edits and the answers every labeler of their set "
            "ranked first (labeler/labels/dataset.py's best_answers, what the export's sft file holds)"
        },
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "also an SFT file: JSONL of {prompt, completion} (a string or TRL's conversational messages), "
            "as the export's sft.jsonl writes it"
        },
    )
    epochs: int = field(default=2, metadata={"help": "passes over the answers"})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate"})
    batch_size: int = field(default=8, metadata={"help": "answers per step, over all processes"})
    max_length: int = field(default=384, metadata={"help": "tokens per prompt+answer (the prompt cut first)"})
    mixed_precision: Literal["auto", "no", "bf16"] = field(default="auto", metadata={"help": PRECISION_HELP})
    start_from: Literal["parent", "base"] = field(
        default="parent",
        metadata={"help": "parent: continue the current version's adapter; base: a fresh adapter on v0"},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank (a fresh adapter)"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (a fresh adapter)"})
    eval_fraction: float = field(
        default=0.25,
        metadata={
            "help": "share of prompts held out (the reward model's and DPO's split, fixed per prompt): the held-out "
            "answers' per-token NLL before and after is the stage's evaluation"
        },
    )
    make_current: bool = field(
        default=False,
        metadata={
            "help": "make the new version current when done (off: it stays a candidate until its held-out NLL is "
            "read and an admin switches, or a round goes on from it)"
        },
    )
    sample_prompts: int = field(default=4, metadata={"help": "eval prompts sampled before and after"})
    max_new_tokens: int = field(
        default=72, metadata={"help": "answer length cap of the before/after samples"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "where to train"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.store and not self.data:
            raise ValueError("store is off and no data file is given: nothing to train on")


# The generator's answer cap by default (`rankloop serve --max-new-tokens`): bench/loop.py measured every recipe at
# it, and a DPO round's KL budget samples answers of this length, as the generator writes them. At 128 tokens the
# embedded default still cut 44% of its answers (58% at 72) and a set took 31% longer to write.
ANSWER_TOKENS = 72

# both optimisers' budget in a round: 4 nats from v0, each round's own update scaled back toward its parent,
# measured at 0.7 (near the generator's temperature)
ROUND_KL_BUDGET: dict[str, object] = {
    "kl_budget": 4.0,
    "kl_budget_from": "parent",
    "kl_budget_temperature": 0.7,
}

# The stage settings a round exposes, as `<stage>_<field>`: type, default and help come from the stage's own field,
# so nothing is declared twice; a value here is the round's own default where it differs (None: the stage's).
# The round's DPO defaults are the recipe bench/loop.py measured best (docs/training.md): four sets a step at lr
# 2e-4, beta 0.2, every set so far, within the round's KL budget (ROUND_KL_BUDGET). A quarter of the prompts is held out
# (reward model and DPO alike) so the gate has enough held-out pairs to judge a round of about 80 sets; a PPO
# round answers 16 held-out prompts before and after, which its reward model scores for the gate. The round's PPO
# samples answers as long as the generator's (the labelers judged those, cut ones included, so the reward model
# already scores a cut answer down and no extra penalty is added), four to each of four prompts a step with
# group advantages (what PPO on the noise-free reward gained most with), within the same KL budget as DPO
# (docs/benchmarks.md: without it, the stage's own defaults left the KL from v0 at 9.2).
ROUND_EXPOSES: dict[str, tuple[type, dict[str, object]]] = {
    "reward": (RewardConfig, {"continue_from": "latest", "replay": None, "epochs": 2, "learning_rate": 1e-3, "max_length": 256, "eval_fraction": 0.25, "keep_ties": None, "none_acceptable": None, "heads": None, "ensemble": None}),
    "ppo": (PPOConfig, {"reward_source": None, "rules_judge": None, "rules_weight": None, "steps": None, "batch_prompts": 4, "learning_rate": None, "kl_coef": None, "max_new_tokens": ANSWER_TOKENS, "gold": None, "advantage": "group", "group_size": None, "no_eos_penalty": 0.0, "length_debias": None, **ROUND_KL_BUDGET, "sample_prompts": 16}),
    "sft": (SFTConfig, {"epochs": None, "learning_rate": None}),
    "dpo": (DPOConfig, {"beta": 0.2, "learning_rate": 2e-4, "epochs": None, "batch_sets": 4, "data": "all", "replay": None, "trainer": None, "sft_weight": None, "pair_weight": None, "kl_weight": None, "label_smoothing": None, "length_weight": None, "min_margin": None, "tail_average": None, "start_from": None, "eval_fraction": 0.25, **ROUND_KL_BUDGET, "max_new_tokens": ANSWER_TOKENS}),
}  # fmt: skip


def _with_stage_fields(cls: type) -> type:
    """Before `@dataclass`: add every field of `ROUND_EXPOSES` to `cls` under its stage's prefix."""
    for prefix, (config, exposed) in ROUND_EXPOSES.items():
        own = {f.name: f for f in fields(config)}
        for name, default in exposed.items():
            stage_field = own[name]
            assert stage_field.default is not MISSING, f"{config.__name__}.{name} needs a plain default"
            key = f"{prefix}_{name}"
            cls.__annotations__[key] = config.__annotations__[name]
            value = stage_field.default if default is None else default
            setattr(cls, key, field(default=value, metadata=dict(stage_field.metadata)))
    return cls


@dataclass
@_with_stage_fields
class RoundConfig:
    """The settings of a round: its own, then the stages' settings it exposes (`ROUND_EXPOSES`, e.g. `ppo_steps`);
    each stage keeps its other defaults."""

    home: str = field(default="runs", metadata={"help": "rankloop home folder"})
    db: str | None = field(default=None, metadata={"help": "database URL (default: the home's SQLite file)"})
    optimizer: Literal["dpo", "ppo"] = field(
        default="dpo",
        metadata={
            "help": "DPO on the ranked sets (the measured default), or a reward model then PPO against it"
        },
    )
    switch: Literal["gate", "auto", "manual"] = field(
        default="gate",
        metadata={
            "help": "gate: the new version becomes current only when the gate passes it (enough held-out pairs, "
            "accuracy above chance, KL within the budget; rlhf/train/gate.py), else it stays a candidate an admin may "
            "switch to; auto: current whatever the gate says; manual: an admin decides"
        },
    )
    sft: bool = field(
        default=False,
        metadata={
            "help": "first fine-tune the policy on the best answers (rlhf/train/sft.py: edits, answers every labeler "
            "ranked first), then PPO or DPO goes on from that; off until bench/loop.py measures it better"
        },
    )
    include_imported: bool = field(default=False, metadata={"help": "also use imported pairs"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "where to train"})

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.optimizer == "ppo":  # the stage's own cross-field checks (a rules reward names its judge)
            PPOConfig(**self.stage_settings("ppo"))

    def stage_settings(self, stage: str) -> dict[str, Any]:
        """The values this round sets for one stage (`reward`, `ppo` or `dpo`), by the stage's field names."""
        return {name: getattr(self, f"{stage}_{name}") for name in ROUND_EXPOSES[stage][1]}


@dataclass(frozen=True)
class Stage:
    """One stage: the module that runs it (`python -m MODULE`), its settings (None: it parses its own flags and
    is not launched as a job), what `rankloop --help` says of it, and the admin form's title."""

    module: str
    config: type | None
    help: str
    title: str = ""


STAGES: dict[str, Stage] = {
    "round": Stage(
        "rlhf.train.round",
        RoundConfig,
        "a whole round: reward model, then PPO or DPO, then switch (`rankloop round --help`)",
        "Run a whole round (reward model, then PPO or DPO)",
    ),
    "reward": Stage(
        "rlhf.train.reward",
        RewardConfig,
        "train a reward model from the store's rankings (see `rankloop reward --help`)",
        "Train a reward model",
    ),
    "ppo": Stage(
        "rlhf.train.ppo",
        PPOConfig,
        "PPO round from the current policy against a reward model (see `rankloop ppo --help`)",
        "PPO against a reward model",
    ),
    "dpo": Stage(
        "rlhf.train.dpo",
        DPOConfig,
        "DPO on the store's pairs from the current policy (see `rankloop dpo --help`)",
        "DPO on the pairs",
    ),
    "sft": Stage(
        "rlhf.train.sft",
        SFTConfig,
        "fine-tune the policy on the best answers: edits, answers every labeler ranked first (`rankloop sft --help`)",
        "SFT on the best answers",
    ),
    "pregen": Stage(
        "rlhf.serve.pregen_process",
        None,
        "run only the pre-generation worker, e.g. on a GPU machine with --backend vllm (`rankloop pregen --help`)",
    ),
}
JOB_KINDS: tuple[str, ...] = tuple(name for name, stage in STAGES.items() if stage.config is not None)


def job_config(kind: str) -> type:
    """The settings dataclass of a stage that runs as a job; ValueError for any other name."""
    stage = STAGES.get(kind)
    if stage is None or stage.config is None:
        raise ValueError(f"unknown job kind {kind!r}; use one of {', '.join(JOB_KINDS)}")
    return stage.config
