"""What readers ask of reward models and policy versions as columns (labeler/records/: RewardFacts, VersionFacts),
filled from the figures their stages recorded in `metrics` (read here as they were written until now): a reward model's held-out accuracy, pairs and sets,
score heads, ensemble size, saved information and parent model; a version's KL from v0, DPO's held-out accuracy
and the gate's decision. A store made at revision 0001 gets the columns; a new one has them already (0001 creates
today's tables), so each is added only where missing and every row is filled either way.

Revision ID: 0002
Revises: 0001
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

REWARD_COLUMNS: list[sa.Column] = [
    sa.Column("accuracy", sa.Float(), nullable=True),
    sa.Column("heldout_pairs", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("heldout_sets", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("heads", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("ensemble", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("information", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("continued_from", sa.String(length=64), nullable=True),
]
VERSION_COLUMNS: list[sa.Column] = [
    sa.Column("kl", sa.Float(), nullable=True),
    sa.Column("heldout_accuracy", sa.Float(), nullable=True),
    sa.Column("gate_decision", sa.String(length=16), nullable=True),
]


def add_missing(table: str, columns: list[sa.Column]) -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}
    for column in columns:
        if column.name not in have:
            op.add_column(table, column)


def fill(table: str, values_of: Any) -> None:
    """Each row's columns from its `metrics` (`values_of(metrics) -> {column: value}`)."""
    bind = op.get_bind()
    rows = sa.table(table, sa.column("id"), sa.column("metrics", sa.JSON()))
    for row_id, metrics in bind.execute(sa.select(rows.c.id, rows.c.metrics)).all():
        values = values_of(metrics or {})
        target = sa.table(table, sa.column("id"), *(sa.column(name) for name in values))
        bind.execute(sa.update(target).where(target.c.id == row_id).values(**values))


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def reward_values(metrics: dict) -> dict[str, Any]:
    """A reward model's columns from the figures the reward stage recorded until this revision (a model evaluated
    on its training sets, with none held out, has no held-out accuracy)."""
    held = int(metrics.get("heldout_sets") or 0)
    return {
        "accuracy": number(metrics.get("accuracy")) if held else None,
        "heldout_pairs": int(metrics.get("pairs") or 0) if held else 0,
        "heldout_sets": held,
        "heads": int(metrics.get("heads") or 1),
        "ensemble": int(metrics.get("ensemble") or 1),
        "information": bool(metrics.get("information")),
        "continued_from": metrics.get("continued_from") or None,
    }


def version_values(metrics: dict) -> dict[str, Any]:
    """A version's columns from what its round recorded until this revision: the KL budget's fit, else PPO's
    last KL; DPO's held-out accuracy; the gate's decision."""
    final = metrics.get("final") or {}
    fit = metrics.get("kl_budget") or {}
    return {
        "kl": number(fit.get("kl")) if fit else number(final.get("kl")),
        "heldout_accuracy": number(final.get("heldout_accuracy")) if final.get("heldout_sets") else None,
        "gate_decision": (metrics.get("gate") or {}).get("decision"),
    }


def upgrade() -> None:
    add_missing("rewardmodel", REWARD_COLUMNS)
    add_missing("policyversion", VERSION_COLUMNS)
    fill("rewardmodel", reward_values)
    fill("policyversion", version_values)


def downgrade() -> None:
    for column in VERSION_COLUMNS:
        op.drop_column("policyversion", column.name)
    for column in REWARD_COLUMNS:
        op.drop_column("rewardmodel", column.name)
