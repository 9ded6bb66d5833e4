"""A version taken away says where it came from: its lineage from v0, and for each version the round that made
it (optimizer, rankings used), its evaluation (KL from v0, held-out accuracy) and the gate's verdict, as the model
card `rankloop export-model` writes beside the weights.

    with Session(engine) as s:
        chain = lineage(session=s, version=3)        # [v0, v1, v3]
        text = model_card(session=s, version=3, merged=True)
"""

from __future__ import annotations

from sqlmodel import Session, select

from labeler.store.tables import PolicyVersion, TrainingRound


def lineage(*, session: Session, version: int) -> list[PolicyVersion]:
    """The versions from v0 to `version`, each the parent of the next; ValueError for an unknown version."""
    row = session.exec(select(PolicyVersion).where(PolicyVersion.version == version)).first()
    if row is None:
        known = ", ".join(f"v{v}" for v in session.exec(select(PolicyVersion.version)).all()) or "none"
        raise ValueError(f"no policy version v{version} (versions: {known})")
    chain = [row]
    while chain[-1].parent_id is not None and len(chain) <= 10_000:
        parent = session.get(PolicyVersion, chain[-1].parent_id)
        if parent is None:
            break
        chain.append(parent)
    return chain[::-1]


def _line(pv: PolicyVersion, made_by: TrainingRound | None) -> str:
    kl = "-" if pv.kl is None else f"{pv.kl:.2f}"
    accuracy = "-" if pv.heldout_accuracy is None else f"{pv.heldout_accuracy:.3f}"
    switched = ", ".join(str(s["by"]) for s in pv.metrics.get("switches", [])) or "-"
    made = f"{made_by.optimizer} round, {len(made_by.ranking_ids)} rankings" if made_by else "-"
    return f"| v{pv.version} | {made} | {kl} | {accuracy} | {pv.gate_decision or '-'} | {switched} |"


def model_card(*, session: Session, version: int, merged: bool) -> str:
    """The README.md of an exported version (Markdown, Hugging Face's model card layout)."""
    chain = lineage(session=session, version=version)
    rounds = {
        r.new_version_id: r
        for r in session.exec(select(TrainingRound)).all()
        if r.new_version_id in {pv.id for pv in chain}
    }
    base = chain[0].base_model
    how = (
        "the base with the version's LoRA adapter merged into its weights: load it with "
        "`AutoModelForCausalLM.from_pretrained(folder)`, no peft needed"
        if merged
        else f"the version's LoRA adapter: load it on `{base}` with `PeftModel.from_pretrained(base, folder)`"
    )
    return "\n".join(
        [
            "---",
            f"base_model: {base}",
            "library_name: " + ("transformers" if merged else "peft"),
            "tags: [rlhf, rankloop]",
            "---",
            f"# rankloop policy v{version}",
            "",
            f"Trained by rankloop from human rankings. This folder holds {how}.",
            "",
            "Lineage: " + " -> ".join(f"v{pv.version}" for pv in chain),
            "",
            "| version | made by | KL from v0 | held-out accuracy | gate | made current by hand |",
            "|---|---|---|---|---|---|",
            *(_line(pv, rounds.get(pv.id)) for pv in chain),
            "",
        ]
    )
