"""Compose the tabs into one Gradio app of two pages: the labeling page at / (what every labeler's browser loads,
with only the labeling components) and the admin pages at /admin (admins only; an admin who opens / goes on to
them). Every admin handler also checks the role on the server, whatever page called it.

    launch(build_ui(deps), deps, port=7860, api=rest_app(deps.engine, deps.runner))   # labeler/api/app.py
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from labeler.store.login import LoginThrottle
from labeler.ui.admin_browse import build_browse_tab
from labeler.ui.admin_constitution import build_constitution_tab
from labeler.ui.admin_conversations import build_conversations_tab
from labeler.ui.admin_dashboard import build_dashboard
from labeler.ui.admin_data import build_data_tab, build_export_tab, build_users_tab
from labeler.ui.admin_gold import build_gold_tab
from labeler.ui.admin_judges import build_judges_tab
from labeler.ui.admin_policies import build_policies_tab
from labeler.ui.admin_selection import build_selection_tab
from labeler.ui.admin_training import build_training_tab
from labeler.ui.auth import CLIENT_ADDRESS_MIDDLEWARE, make_auth
from labeler.ui.deps import UIDeps, current_user, require_admin
from labeler.ui.guard import MAX_UPLOAD_BYTES, ContentSecurityPolicy, SessionGuard
from labeler.ui.job_view import CSS as JOB_CSS
from labeler.ui.labeling import LABELING_CSS, build_labeling_tab

# Wrapped tables break headers between words, never a letter per line; narrow columns keep room for a word and
# the table scrolls sideways instead.
TABLE_CSS = """
th .header-content .header { word-break: keep-all !important; overflow-wrap: normal !important; white-space: normal !important; }
th { min-width: 5em !important; }
"""
# Gradio's page navbar: the header's own links move between the two pages (only admins may open the second)
NAV_CSS = ".nav-holder { display: none !important; }"
CSS = LABELING_CSS + JOB_CSS + TABLE_CSS + NAV_CSS
API_PREFIX = "/api/v1"
ADMIN_APP = "admin-app"


ADMIN_PAGE = "admin"  # the admin pages' path: /admin
ADMIN_TABS = (
    build_dashboard,
    build_browse_tab,
    build_data_tab,
    build_constitution_tab,
    build_conversations_tab,
    build_judges_tab,
    build_users_tab,
    build_gold_tab,
    build_selection_tab,
    build_policies_tab,
    build_export_tab,
    build_training_tab,
)
# An admin who opens the labeling page goes on to the admin pages, unless they came from there to label.
TO_ADMIN_JS = (
    "(role) => { if (role === 'admin' && !location.search.includes('label')) location.assign('admin'); }"
)


def header(text: str, target: str, visible: bool = True) -> tuple[gr.Markdown, gr.Button]:
    """The title, who is logged in (filled on load), a link to the other page, and Log out."""
    with gr.Row():
        gr.Markdown("# rankloop")
        who = gr.Markdown(elem_id="whoami")
        link = gr.Button(text, link=target, size="sm", scale=0, visible=visible, elem_id=f"go-{text.lower()}")
        gr.Button("Log out", link="/logout", size="sm", scale=0)
    return who, link


def build_ui(deps: UIDeps) -> gr.Blocks:
    """Two pages on one server: the labeling page at / (all a labeler's browser loads: its config holds the
    labeling components only) and the admin pages at /admin (admins only: labeler/ui/guard.py refuses others)."""
    with gr.Blocks(title="rankloop") as demo:
        who, admin_link = header("Admin", f"/{ADMIN_PAGE}", visible=False)  # shown to admins
        with gr.Tabs(selected="label"):
            labeling = build_labeling_tab(deps)
        role = gr.Textbox(visible=False, elem_id="role")

        def on_load(request: gr.Request) -> dict:
            user = current_user(deps.engine, request)
            updates = labeling.updates(request)
            updates[who] = f"Logged in as **{user.name}** ({user.role})"
            updates[admin_link] = gr.update(visible=user.role == "admin")
            updates[role] = user.role
            return updates

        # Not queued (one POST, like a submit); named so scripted clients open the page as a browser does.
        demo.load(
            on_load, None, [*labeling.outputs, who, admin_link, role], api_name="open_page", queue=False
        ).then(None, [role], None, js=TO_ADMIN_JS)

    with demo.route("Admin", f"/{ADMIN_PAGE}", show_in_navbar=False):
        admin_who, _ = header("Label", "/?label")
        with gr.Column(elem_id=ADMIN_APP), gr.Tabs():
            admin_tabs = [build(deps) for build in ADMIN_TABS]

        def on_admin_load(request: gr.Request) -> dict:
            """The admin tabs filled when an admin opens the admin pages."""
            user = require_admin(deps.engine, request)
            updates: dict = {admin_who: f"Logged in as **{user.name}** ({user.role})"}
            for tab in admin_tabs:
                updates.update(tab.updates(request))
            return updates

        admin_outputs = [o for tab in admin_tabs for o in tab.outputs]
        demo.load(on_admin_load, None, [*admin_outputs, admin_who], api_name="admin_open_page", queue=False)
    return demo


def inside(block: object) -> list[int]:
    """The ids of every block under `block` (not its own)."""
    found: list[int] = []
    for child in getattr(block, "children", []):
        found += [child._id, *inside(child)]
    return found


def admin_blocks(demo: gr.Blocks) -> frozenset[int]:
    """The ids of everything on the admin pages (under the `ADMIN_APP` column): what a labeler's config leaves out."""
    roots = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == ADMIN_APP]
    return frozenset(i for root in roots for i in [root._id, *inside(root)])


def quiet_queue_analytics() -> None:
    """Gradio's queue rebuilds a pandas table of its last 10,000 events after every event, for a monitoring
    page this app does not serve: a third of the server's CPU per submit after a few thousand rankings. Keep a
    short history and summarise it rarely. Read when the queue is made, so call this before `launch`."""
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")


def mounting(api: ASGIApp | None) -> Callable[[Any], contextlib.AbstractAsyncContextManager]:
    """A lifespan that mounts the REST API (labeler/api/app.py) at /api/v1 on Gradio's server as it starts,
    before it takes a request, so the API sits behind the same guard and headers as the page."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if api is not None:
            app.mount(API_PREFIX, api)
        yield

    return lifespan


def launch(
    demo: gr.Blocks,
    deps: UIDeps,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    api: ASGIApp | None = None,
) -> gr.Blocks:
    """Serve the app with the users table as the log-in check and the styles, and `api` at /api/v1."""
    quiet_queue_analytics()
    demo.queue(default_concurrency_limit=16).launch(
        server_name=host,
        server_port=port,
        auth=make_auth(deps.engine, LoginThrottle(clock=deps.clock)),
        app_kwargs={
            "lifespan": mounting(api),
            "middleware": [
                CLIENT_ADDRESS_MIDDLEWARE,
                Middleware(ContentSecurityPolicy),
                Middleware(
                    SessionGuard,
                    engine=deps.engine,
                    exports=deps.home / "exports",
                    admin_blocks=admin_blocks(demo),
                    clock=deps.clock,
                ),
            ],
        },
        max_file_size=MAX_UPLOAD_BYTES,
        auth_message="Log in with your rankloop account.",
        css=CSS,
        show_error=False,  # clients see gr.Error's sentence; tracebacks stay in the server log
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo
