"""Conversations through the app: an admin turns them on, a labeler ranks a set and writes the next message, the
generator's step continues the conversation from the chosen answer, and the admin sees the tree and stops it."""

from gradio_client import Client
from load_client import page_from_outputs
from sqlmodel import Session, select

from labeler.labels.conversations import continue_conversations
from labeler.store.store import CompletionIn, add_completion_set
from labeler.store.tables import Prompt
from tests.labeler.helpers import make_sets
from tests.ui.conftest import PASSWORDS


def test_a_labelers_next_message_continues_the_conversation_and_the_admin_sees_and_stops_it(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    said = admin.predict("labeler", 3, "finish", "", api_name="/admin_conversations")
    assert said == "Conversations: next messages from **labeler**, at most 3 user turns, finish first."
    try:
        admin.predict("labeler", 3, "finish", "nonsense", api_name="/admin_conversations")
        raise AssertionError("a line without = was saved")
    except Exception as exc:
        assert "line 1: write `SOURCE = labeler`" in str(exc)
    with Session(running_app.engine) as s:
        make_sets(s, 1)
    alice = Client(running_app.url, auth=("alice", PASSWORDS["alice"]), verbose=False)
    opened = page_from_outputs(list(alice.predict(api_name="/open_page")))
    assert opened is not None
    widget = {"token": opened.token, "ranks": [2, 1, 3, 4], "flags": [None] * 4}
    out = alice.predict(widget, False, "", "Tell me more about that.", api_name="/submit_ranking")
    assert "Saved" in out[2]
    with Session(running_app.engine) as s:
        assert continue_conversations(session=s) == 1
        second = s.exec(select(Prompt).where(Prompt.turn == 2)).one()
        assert second.messages[-1] == {"role": "user", "content": "Tell me more about that."}
        assert second.messages[-2]["content"] == opened.texts[1].removeprefix("<p>").removesuffix("</p>\n")
    tree = admin.predict(second.id, api_name="/admin_conversation_tree")
    assert "Turn 1, prompt" in tree and "Turn 2, prompt" in tree and "Tell me more about that." in tree
    with Session(running_app.engine) as s:  # the next turn's set, as the generator writes it
        answers = [CompletionIn("More, then."), CompletionIn("Nothing more.")]
        next_set, _ = add_completion_set(
            session=s, prompt_id=second.id, completions=answers, policy_version_id=None
        )
        next_id = next_set.id
    detail, _, _ = admin.predict(
        next_id, api_name="/admin_browse_set"
    )  # Browse shows the tree, this path marked
    assert "Conversation (▶" in detail and "▶ Turn 1, prompt" in detail and "▶ Turn 2, prompt" in detail
    said, tree = admin.predict(second.id, api_name="/admin_stop_branch")
    assert said.startswith("Stopped 1 prompt(s)") and "(stopped)" in tree
