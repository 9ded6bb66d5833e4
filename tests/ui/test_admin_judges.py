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
        admin.predict("nice", "rules", "fewer than 50 words\nbe nice", "", "", api_name="/admin_add_judge")
    said, table, _ = admin.predict("brief", "rules", "# short answers\nfewer than 5 words", "", "", api_name="/admin_add_judge")  # fmt: skip
    assert "Added rule judge **brief**" in said
    assert [row[:5] for row in table["data"]] == [["brief", "rules", "enabled", "fewer than 5 words", 0]]
    with pytest.raises(Exception, match="already exists"):
        admin.predict("admin", "rules", "fewer than 5 words", "", "", api_name="/admin_add_judge")
    with Session(running_app.engine) as s:
        make_sets(s, 2)
    assert judge_waiting_sets(running_app.engine) >= 2
    *_, judges = admin.predict(api_name="/admin_dashboard")  # the dashboard lists judges too
    assert judges["data"][0][:2] == ["brief", "rules"] and judges["data"][0][4] >= 2
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
    with pytest.raises(Exception, match="no judge named 'alice'"):
        admin.predict("alice", 0.5, api_name="/admin_suggestions")
    assert admin.predict("", 0.5, api_name="/admin_suggestions")[0] == "Suggestions are off."


def test_an_admin_adds_a_model_judge_and_saves_its_prompts_next_version_through_the_app(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    prompt = "Principles:\n{principles}\nQ: {prompt}\nA: {first}\nB: {second}\nA or B?"
    with pytest.raises(Exception, match=r"must show \{first\}, \{second\}"):
        admin.predict("selfish", "model", "", "base", "Q: {prompt} {principles}", api_name="/admin_add_judge")
    said, table, prompts = admin.predict("self", "model", "", "base", prompt, api_name="/admin_add_judge")
    assert "Added model judge **self**" in said
    assert [row[:5] for row in table["data"]] == [["self", "model", "enabled", "base, prompt v1", 0]]
    assert table["data"][0][8] == "no set shared with people yet"  # human rankings saved
    assert prompts.startswith("self asks base, comparison prompt v1:\nPrinciples:")
    said, table, prompts = admin.predict("self", prompt + "\nReply A or B.", api_name="/admin_judge_prompt")
    assert said == "Judge **self** asks with comparison prompt v2 from now on."
    assert table["data"][0][3] == "base, prompt v2" and prompts.endswith("Reply A or B.")
    with pytest.raises(Exception, match="no model judge named 'nobody'"):
        admin.predict("nobody", prompt, api_name="/admin_judge_prompt")
