"""The REST API as one FastAPI app, mounted at /api/v1 on the Gradio server (labeler/ui/app.py `launch`), behind
the same session guard (body limits) and security headers. Its description is for admins: /api/v1/openapi.json
and /api/v1/docs (a page rendered on the server from it, no remote scripts), with an admin's token or an admin
logged in to the app. docs/api.md has a walk-through with plain `httpx`.

    api = rest_app(engine, runner)     # then launch(demo, deps, api=api)
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.engine import Engine
from starlette.middleware import Middleware

from labeler.api import data, hooks, labeling, training
from labeler.api.auth import Caller, UseLog, admin, labeler

PREFIX = "/api/v1"


def rest_app(engine: Engine, runner: Any = None) -> FastAPI:
    """The API with its state (the store's engine, the job runner or None)."""
    api = FastAPI(
        title="rankloop API",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        middleware=[Middleware(UseLog, engine=engine)],
        description="Labelling, data and training for programs. Authenticate with `Authorization: Bearer <token>` "
        "(an admin makes tokens in Admin > Users or with `rankloop token add`).",
    )
    api.state.engine, api.state.runner = engine, runner
    for module in (labeling, data, training, hooks):
        api.include_router(module.router)

    @api.get("/me", tags=["labelling"], summary="Who this token acts as")
    def me(who: Caller = Depends(labeler)) -> dict[str, Any]:
        return {"name": who.name, "role": who.role, "token_id": who.token_id}

    @api.get("/openapi.json", include_in_schema=False)
    def openapi(who: Caller = Depends(admin)) -> JSONResponse:
        return JSONResponse(described(api))

    @api.get("/docs", include_in_schema=False)
    def docs(who: Caller = Depends(admin)) -> HTMLResponse:
        return HTMLResponse(docs_page(described(api)))

    return api


def described(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI description with the mount's prefix on every path."""
    spec = api.openapi()
    spec["servers"] = [{"url": PREFIX}]
    return spec


def docs_page(spec: dict[str, Any]) -> str:
    """The endpoints as a plain page: method, path, summary, parameters and body fields, by tag."""
    rows: dict[str, list[str]] = {}
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            body: dict[str, Any] = op.get("requestBody", {}).get("content", {})
            first: dict[str, Any] = next(iter(body.values()), {})
            schema = first.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
            fields = ", ".join(
                spec.get("components", {}).get("schemas", {}).get(schema, {}).get("properties", {})
            )
            detail = " · ".join(
                x for x in (f"query: {params}" if params else "", f"body: {fields}" if fields else "") if x
            )
            rows.setdefault((op.get("tags") or ["other"])[0], []).append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(PREFIX + path)}</code></td>"
                f"<td>{html.escape(op.get('summary', ''))}</td><td>{html.escape(detail)}</td></tr>"
            )
    sections = "".join(
        f"<h2>{html.escape(tag)}</h2><table><tr><th>method</th><th>path</th><th>what</th><th>inputs</th></tr>"
        + "".join(lines)
        + "</table>"
        for tag, lines in rows.items()
    )
    intro = html.escape(spec.get("info", {}).get("description", ""))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>rankloop API</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:4px 8px;text-align:left;"
        "vertical-align:top;border-bottom:1px solid #ddd}table{border-collapse:collapse;width:100%}</style></head>"
        f"<body><h1>rankloop API v1</h1><p>{intro}</p><p>The full description: "
        f"<a href='{PREFIX}/openapi.json'>openapi.json</a>.</p>{sections}</body></html>"
    )
