"""The gold tab through Gradio's API as the page calls it: set the rate, mark a set as gold, see it listed."""

from gradio_client import Client
from sqlmodel import Session, select

from labeler.store.settings import gold_rate
from labeler.store.tables import CompletionSet
from tests.ui.conftest import PASSWORDS


def test_admin_sets_the_gold_rate_and_marks_a_set(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    assert admin.predict(0.2, api_name="/admin_gold_rate") == "Gold rate is now 0.20."
    message, sets, _ = admin.predict(1, "2,1,-,3", False, api_name="/admin_gold_mark")
    assert message.startswith("Gold set") and "made from set 1" in message
    assert len(sets["data"]) == 1
    try:
        admin.predict(1, "1,2", False, api_name="/admin_gold_mark")
        raise AssertionError("a short ranking was accepted")
    except Exception as exc:  # the page shows the sentence
        assert "gives 2 ranks for a set of 4 answers" in str(exc)
    with Session(running_app.engine) as s:
        assert gold_rate(session=s) == 0.2
        gold = s.exec(select(CompletionSet).where(CompletionSet.origin == "gold")).one()
        assert len(gold.gold["flagged"]) == 1 and len(gold.gold["ranks"]) == 3
