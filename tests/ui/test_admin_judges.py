"""The Judges tab through the app: an admin adds a rule judge (rules it cannot read are refused with the line and
the check), sees it listed, and disables it; a labeler is refused (tests/ui/test_api_security.py)."""

import pytest
from gradio_client import Client
from sqlmodel import Session

from labeler.labels.judges import judge_waiting_sets, list_judges
from tests.labeler.helpers import make_sets
from tests.ui.conftest import PASSWORDS


def test_an_admin_adds_lists_and_disables_a_rule_judge_through_the_app(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    with pytest.raises(Exception, match="line 2: 'be nice' is not a check"):
        admin.predict("nice", "fewer than 50 words\nbe nice", api_name="/admin_add_judge")
    said, table = admin.predict("brief", "# short answers\nfewer than 5 words", api_name="/admin_add_judge")
    assert "Added rule judge **brief**" in said
    assert [row[:5] for row in table["data"]] == [["brief", "rules", "enabled", "fewer than 5 words", 0]]
    with pytest.raises(Exception, match="already exists"):
        admin.predict("admin", "fewer than 5 words", api_name="/admin_add_judge")
    with Session(running_app.engine) as s:
        make_sets(s, 2)
    assert judge_waiting_sets(running_app.engine) >= 2
    said, table = admin.predict("brief", api_name="/admin_disable_judge")
    assert said == "Judge **brief** disabled." and table["data"][0][2] == "disabled"
    assert table["data"][0][4] >= 2  # the sets it ranked
    with pytest.raises(Exception, match="no judge named 'alice'"):
        admin.predict("alice", api_name="/admin_disable_judge")
    with Session(running_app.engine) as s:
        assert [j.disabled for j in list_judges(session=s)] == [True]
    said, stats = admin.predict("brief", 0.25, api_name="/admin_suggestions")
    assert said == "The labeling page suggests **brief**'s ranking on 25% of the sets it ranked."
    assert stats.startswith("No set ranked with a suggestion")
    with pytest.raises(Exception, match="no rule judge named 'alice'"):
        admin.predict("alice", 0.5, api_name="/admin_suggestions")
    assert admin.predict("", 0.5, api_name="/admin_suggestions")[0] == "Suggestions are off."
