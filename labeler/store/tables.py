"""The store's tables (SQLModel). Pairs are derived from rankings, never stored.

Imported preference pairs are kept as two-completion sets with one ranking (origin `imported`), so the same
conversion, export and training paths serve human and imported labels alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, Column, Index, Table, UniqueConstraint
from sqlmodel import Field, SQLModel

Role = Literal["labeler", "admin"]
ROLES: tuple[str, ...] = ("labeler", "admin")  # people's roles; a judge's account has JUDGE_ROLE
JUDGE_ROLE = "judge"
FlagReason = Literal["nonsensical", "harmful", "factually_wrong", "off_topic", "other"]
FLAG_REASONS: tuple[str, ...] = ("nonsensical", "harmful", "factually_wrong", "off_topic", "other")
Split = Literal["train", "eval"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def utcnow() -> datetime:
    """Timezone-aware UTC now; every timestamp in the store is UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A timestamp read back from the store as UTC (SQLite hands them back without a zone)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def table_of(model: type[SQLModel]) -> Table:
    """A table model's core table, for statements that skip the ORM on hot paths."""
    return model.__table__  # type: ignore[attr-defined]


def id_of(row: Any) -> int:
    """The id of a row read from or flushed to the store (always set there; None only before a flush)."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id yet: flush it first")
    return row.id


def _json(default: Any = None) -> Any:
    factory = (lambda: type(default)()) if isinstance(default, (list, dict)) else None
    if factory is None:
        return Field(default=default, sa_column=Column(JSON, nullable=default is None))
    return Field(default_factory=factory, sa_column=Column(JSON, nullable=False))


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True, max_length=64)
    password_hash: str
    role: str = Field(default="labeler", max_length=16)
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    # Log-in sessions that began before this moment have ended (set by a password reset or by disabling).
    sessions_valid_after: datetime | None = None


class Prompt(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    messages: list[dict] = _json([])
    content_hash: str = Field(unique=True, index=True, max_length=64)
    source: str = Field(default="", max_length=256)
    split: str = Field(default="train", index=True, max_length=8)
    # Verifiable instructions the prompt carries ([{kind, params}], labeler/labels/instructions.py), or None
    instructions: list[dict] | None = _json(None)
    created_at: datetime = Field(default_factory=utcnow)
    # Conversations (labeler/labels/conversations.py): a later turn continues a decided set from its chosen answer
    # (no foreign keys: a set names its prompt, so keys both ways would be a cycle no table order can create)
    parent_set_id: int | None = Field(default=None, index=True)
    parent_completion_id: int | None = None
    conversation_id: int | None = Field(default=None, index=True)  # the first turn's prompt id; None on it
    turn: int = Field(
        default=1, sa_column_kwargs={"server_default": "1"}
    )  # user turns so far, this one included
    # Imported next user messages (turn 2, 3, ...): text, or {"content", "instructions"}; None: none imported
    # (None as SQL NULL: the generator finds prompts with follow-ups left by `IS NOT NULL`)
    follow_ups: list | None = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    stopped: bool = Field(
        default=False, sa_column_kwargs={"server_default": "0"}
    )  # an admin ended the branch


class RewardModel(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    base_model: str
    adapter_path: str | None = None
    job_id: int | None = Field(default=None, foreign_key="job.id")
    snapshot_path: str | None = None
    metrics: dict = _json(
        {}
    )  # the stage's figures and series (labeler/records/reward_models.py reads them typed)
    # What readers ask of a model (RewardFacts, labeler/records/reward_models.py), as columns:
    accuracy: float | None = None  # held-out pairwise accuracy; None when no set was held out
    heldout_pairs: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    heldout_sets: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    heads: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    ensemble: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    information: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    continued_from: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class PolicyVersion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True, index=True)
    base_model: str
    adapter_path: str | None = None
    parent_id: int | None = Field(default=None, foreign_key="policyversion.id")
    reward_model_id: int | None = Field(default=None, foreign_key="rewardmodel.id")
    is_current: bool = Field(default=False, index=True)
    metrics: dict = _json({})  # the stage's figures, samples, the gate's lines, switches by hand
    # What readers ask of a version (VersionFacts, labeler/records/policies.py), as columns:
    kl: float | None = None  # KL from v0 as its round measured it (the budget's fit, else PPO's rollouts)
    heldout_accuracy: float | None = None  # DPO's implicit reward on held-out sets; None without them
    gate_decision: str | None = Field(
        default=None, max_length=16
    )  # pass | fail | not evaluated; None: no gate
    created_at: datetime = Field(default_factory=utcnow)


class CompletionSet(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    policy_version_id: int | None = Field(default=None, foreign_key="policyversion.id")
    origin: str = Field(default="generated", max_length=16)  # generated | imported | gold
    source: str = Field(default="", max_length=256)
    sampling: dict = _json({})
    # A gold set's known answer ({"ranks": {completion id: rank}, "flagged": [ids]}, labeler/labels/gold.py), or None.
    gold: dict | None = _json(None)
    # How the pre-generation worker chose it ({"by": "uncertainty" | "random", "score": doubt, "reward_model",
    # "candidates"}, rlhf/select/selection.py); None for imported, gold and older sets.
    selection: dict | None = _json(None)
    labels_needed: int = 1
    # Its labels (non-skip rankings), counted by the store in the transaction that adds one, so that leasing
    # finds the open sets through an index instead of counting every set's rankings on every lease.
    labels_done: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    generation_seconds: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


# The sets still open, in the order leasing takes them (newest policy first, then the sets closest to their
# overlap k, then the oldest): a lease walks it and stops after a few rows (labeler/store/leasing.py). The predicate
# has no parameters, so PostgreSQL's generic plans use it too.
_OPEN = table_of(CompletionSet).c
Index(
    "ix_set_waiting",
    _OPEN.policy_version_id.desc(),
    _OPEN.labels_done.desc(),
    _OPEN.id,
    sqlite_where=_OPEN.labels_done < _OPEN.labels_needed,
    postgresql_where=_OPEN.labels_done < _OPEN.labels_needed,
)


CompletionOrigin = Literal["generated", "edit", "revision"]
COMPLETION_ORIGINS: tuple[str, ...] = ("generated", "edit", "revision")


class Completion(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    set_id: int = Field(foreign_key="completionset.id", index=True)
    position: int  # order of generation inside the set
    text: str
    token_count: int = 0
    finish_reason: str = Field(default="eos", max_length=16)
    policy_version_id: int | None = Field(default=None, foreign_key="policyversion.id")
    # Who wrote it: `generated` by a policy version (or imported with its set); `edit` by a labeler, who rewrote
    # the answer `source_id` (None: written from scratch) in `edit_seconds`. An edit is its author's alone:
    # other labelers' leases never show it, and only its author's ranking places it (labeler/store/store.py).
    # `revision`: the policy's rewrite of `source_id` by a constitution principle, shown blind like any answer;
    # `detail` keeps its principle, critique and constitution version (rlhf/serve/revisions.py).
    origin: str = Field(default="generated", max_length=16, sa_column_kwargs={"server_default": "generated"})
    author_id: int | None = Field(default=None, foreign_key="user.id")
    source_id: int | None = Field(default=None, foreign_key="completion.id")
    edit_seconds: float | None = None
    detail: dict | None = _json(None)


class Assignment(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("set_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    set_id: int = Field(foreign_key="completionset.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    display_order: list[int] = _json([])  # completion ids in the order this labeler saw them
    leased_at: datetime = Field(default_factory=utcnow)
    lease_expires_at: datetime
    completed_at: datetime | None = None
    # What the page holds instead of the set: a random, server-issued token naming this lease. The ranking
    # submitted through it gets the submission id `lease:<token>`.
    token: str | None = Field(default=None, unique=True, index=True, max_length=64)
    guidelines_version: int | None = None  # the guidelines shown with the set, recorded at lease time
    # A judge's ranking offered as a suggestion (labeler/store/suggestions.py): {"judge": user id, "name", "shown": bool,
    # "ranks": {completion id: rank}} where the judge had ranked the set and suggestions were on; shown False is
    # the share held back to measure anchoring. None: no suggestion was possible.
    suggestion: dict | None = _json(None)


class Ranking(SQLModel, table=True):
    """One labeler's verdict on one set. `ranks` and `flags` map completion id (as text) to rank / reason."""

    __table_args__ = (UniqueConstraint("set_id", "user_id"),)
    id: int | None = Field(default=None, primary_key=True)
    set_id: int = Field(foreign_key="completionset.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True)  # None: imported
    submission_id: str = Field(unique=True, max_length=64)
    ranks: dict[str, int] = _json({})
    flags: dict[str, str] = _json({})
    none_acceptable: bool = False
    skipped: bool = False
    comment: str = ""
    follow_up: str | None = None  # the next user message the labeler wrote, to continue the conversation
    seconds_spent: float | None = None
    guidelines_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class SupersededRanking(SQLModel, table=True):
    """A ranking its labeler took back (undo, labeler/store/undo.py), kept as it was: the store holds both the old
    verdict (here) and the one that replaced it (in Ranking), and counts only the latter."""

    id: int | None = Field(default=None, primary_key=True)
    ranking_id: int = Field(index=True)  # its id while it was current
    set_id: int = Field(foreign_key="completionset.id", index=True)
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    submission_id: str = Field(max_length=64)
    ranks: dict[str, int] = _json({})
    flags: dict[str, str] = _json({})
    none_acceptable: bool = False
    skipped: bool = False
    comment: str = ""
    follow_up: str | None = None
    seconds_spent: float | None = None
    guidelines_version: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    superseded_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=32)
    params: dict = _json({})
    status: str = Field(default="queued", index=True, max_length=16)
    progress: float = 0.0  # of the stage now running (`phase`)
    phase: str = Field(default="", max_length=64)  # the stage now running, e.g. "reward training" or "ppo"
    phase_started_at: datetime | None = None
    metrics: list[dict] = _json([])
    log_tail: str = ""
    error: str | None = None
    pid: int | None = None
    host: str | None = Field(default=None, max_length=255)  # the machine whose runner started the process
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Guideline(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True, index=True)
    text: str
    author: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Constitution(SQLModel, table=True):
    """The principles the model critiques and revises answers by, and the two prompts it is asked with; each save
    is a new version (labeler/store/constitution.py)."""

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field(unique=True, index=True)
    principles: list[str] = _json([])
    critique_prompt: str
    revision_prompt: str
    author: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class Setting(SQLModel, table=True):
    """Small key/value settings an admin changes at run time (e.g. `labels_needed`)."""

    key: str = Field(primary_key=True, max_length=64)
    value: dict = _json({})


class TrainingRound(SQLModel, table=True):
    """One turn of the loop and its lineage: the rankings it used, the reward model, parent and new policy."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = Field(default=None, foreign_key="job.id")
    optimizer: str = Field(default="ppo", max_length=8)
    parent_version_id: int | None = Field(default=None, foreign_key="policyversion.id")
    reward_model_id: int | None = Field(default=None, foreign_key="rewardmodel.id")
    new_version_id: int | None = Field(default=None, foreign_key="policyversion.id")
    ranking_ids: list[int] = _json([])
    set_ids: list[int] = _json([])
    metrics: dict = _json({})
    created_at: datetime = Field(default_factory=utcnow)


class WorkerLease(SQLModel, table=True):
    """Who does a singleton background task (e.g. pre-generation) when several app replicas share one store.

    The holder renews `expires_at` while it lives; once that passes, any replica may take the row over."""

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=128)
    expires_at: datetime
    renewed_at: datetime = Field(default_factory=utcnow)


class Judge(SQLModel, table=True):
    """A labeler account that is a program (its User has role `judge`): its kind and configuration
    (labeler/labels/judges.py). Fixed once made: changed rules make a new judge, so each of its rankings names the
    rules that made it."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", unique=True)
    kind: str = Field(default="rules", max_length=16)  # rules
    config: dict = _json({})  # rules: {"rules": the text an admin wrote}
    created_by: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class ApiToken(SQLModel, table=True):
    """A personal API token (labeler/store/api_tokens.py): only its SHA-256 is kept; the token acts as its user,
    with the user's role at the time of each call."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(default="", max_length=64)  # what it is for, as the admin wrote it
    prefix: str = Field(max_length=16)  # the token's first characters, to tell tokens apart in lists
    digest: str = Field(unique=True, max_length=64)
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class ApiTokenUse(SQLModel, table=True):
    """One call made with a token: when, from where, what and how it ended."""

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="apitoken.id", index=True)
    at: datetime = Field(default_factory=utcnow)
    address: str = Field(default="", max_length=64)
    method: str = Field(default="", max_length=8)
    path: str = Field(default="", max_length=255)
    status: int = 0


class Webhook(SQLModel, table=True):
    """A URL an admin registered for events (labeler/records/webhooks.py); deliveries are signed with `secret`.
    `state` keeps what the periodic events last saw (rankings counted, labelers already reported)."""

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2048)
    events: list[str] = _json([])
    secret: str = Field(max_length=128)
    every: int = 100  # the `rankings.new` event fires for every this many new rankings
    active: bool = True
    state: dict = _json({})
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event for one hook (an outbox row written in the transaction that made the event), sent by the
    server's dispatcher (rlhf/serve/webhooks.py) and retried with backoff until it succeeds or runs out of tries."""

    id: int | None = Field(default=None, primary_key=True)
    hook_id: int = Field(foreign_key="webhook.id", index=True)
    event: str = Field(max_length=64)
    payload: dict = _json({})
    status: str = Field(default="pending", index=True, max_length=16)  # pending, delivered, failed
    attempts: int = 0
    next_at: datetime = Field(default_factory=utcnow, index=True)
    response_code: int | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = None
