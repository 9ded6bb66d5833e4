"""The Constitution tab through the app: an admin saves a version (a bad one is refused with the reason) and turns
revisions on; a labeler is refused (tests/ui/test_api_security.py)."""

import pytest
from gradio_client import Client
from sqlmodel import Session

from labeler.store.constitution import current_constitution, revision_share
from tests.ui.conftest import PASSWORDS


def test_an_admin_saves_a_constitution_and_turns_revisions_on_through_the_app(running_app):
    admin = Client(running_app.url, auth=("admin", PASSWORDS["admin"]), verbose=False)
    with pytest.raises(Exception, match="must show"):
        admin.predict(
            "Be brief.", "{prompt}", "{prompt} {answer} {critique}", api_name="/admin_save_constitution"
        )
    said = admin.predict(
        "Be brief.\nBe kind.", "{prompt} {answer} {principle}", "{prompt} {answer} {critique}",
        api_name="/admin_save_constitution",
    )  # fmt: skip
    assert said == "Constitution saved as version 1 (2 principles)."
    assert admin.predict(0.25, api_name="/admin_revision_share") == "Revisions: 25% of new sets."
    with Session(running_app.engine) as s:
        assert current_constitution(session=s).principles == ["Be brief.", "Be kind."]
        assert revision_share(session=s) == 0.25
