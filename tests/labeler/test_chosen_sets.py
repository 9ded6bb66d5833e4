"""How the sets of recent versions were chosen (labeler/labels/stats.chosen_sets, the "What to label next" table): one
row per version, way of choosing and measure, each with its own mean score."""

from sqlmodel import Session

from labeler.labels.stats import ChosenSets, chosen_sets
from labeler.records.policies import ensure_initial_policy
from labeler.store.store import CompletionIn, add_completion_set, get_or_add_prompt
from labeler.store.tables import id_of
from labeler.ui.admin_selection import CHOSEN_COLUMNS, chosen_frame


def test_scores_of_different_measures_are_never_averaged_together(engine):
    """Counted and averaged by the database: on SQLite and on PostgreSQL."""
    with Session(engine) as s:
        version = id_of(ensure_initial_policy(session=s, base_model="tiny"))
        choices = [
            {"by": "uncertainty", "measure": "information", "score": 3.0},
            {"by": "uncertainty", "measure": "information", "score": 1.0},
            {"by": "uncertainty", "measure": "doubt", "score": 0.5},
            {"by": "random", "measure": "information", "score": 0.25},
            {"by": "random"},
            None,
        ]
        for i, chosen in enumerate(choices):
            prompt = id_of(get_or_add_prompt(session=s, messages=[{"role": "user", "content": f"q{i}"}]))
            add_completion_set(session=s, prompt_id=prompt, completions=[CompletionIn("a"), CompletionIn("b")], policy_version_id=version, selection=chosen)  # fmt: skip
        rows = chosen_sets(session=s)
        frame = chosen_frame(s)
    assert rows == [
        ChosenSets(0, "(before selection)", "", 1, 0, None),
        ChosenSets(0, "random", "", 1, 0, None),
        ChosenSets(0, "random", "information", 1, 0, 0.25),
        ChosenSets(0, "uncertainty", "doubt", 1, 0, 0.5),
        ChosenSets(0, "uncertainty", "information", 2, 0, 2.0),
    ]
    assert list(frame.columns) == CHOSEN_COLUMNS and frame.iloc[-1].tolist() == ["v0", "uncertainty", "information", 2, 0, 2.0]  # fmt: skip
