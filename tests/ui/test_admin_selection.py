"""The "What to label next" tab through Gradio's API as the page calls it: save the selection, see it described,
and a bad value refused with its reason (the
settings' own checks are tests/rlhf/test_selection.py's)."""

from gradio_client import Client
from sqlmodel import Session

from labeler.store.settings import Selection, selection
from tests.ui.conftest import PASSWORDS


def test_admin_saves_the_selection_and_sees_how_sets_were_chosen(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    message, chosen = admin.predict("uncertainty", 0.3, 3, 40, api_name="/admin_selection")
    assert message.startswith("Saved.") and "3 candidate sets per set it keeps" in message
    assert "30% of them at random; at most 40 sets per policy version" in message
    assert "There is no reward model yet: every set is kept until one is trained." in message  # what it reads
    assert chosen["headers"][:2] == ["policy version", "chosen by"]
    assert {row[1] for row in chosen["data"]} <= {"(before selection)", "random", "uncertainty"}
    try:
        admin.predict("uncertainty", 0.3, 3, -2, api_name="/admin_selection")
        raise AssertionError("a negative budget was accepted")
    except Exception as exc:  # the page shows the sentence
        assert "Value -2 is less than minimum value 0" in str(exc)  # the field's range, before the handler
    with Session(running_app.engine) as s:
        assert selection(session=s) == Selection(
            mode="uncertainty", random_share=0.3, oversample=3, budget=40
        )
