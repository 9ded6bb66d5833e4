"""A labeler's page without the admin layout: Gradio describes the whole app (every component, every event) in the
config it sends with the page (`/config`, and inline in `/`'s HTML) and in its API description (`/info`, also
inline). For a labeler, the guard (labeler/ui/guard.py) passes each of those through these filters, which drop
every component inside the Admin tab and every event that touches one, the same way Gradio itself cuts a
multipage app's config down to one page. Admin handlers still refuse a labeler on the server; this keeps the
admin layout (360 components) off labelers' pages.

    labelers_config(config, hidden_ids)     # config dict -> the labeler's
    labelers_page(html, hidden_ids)         # the page's HTML with both inline descriptions filtered
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection

ADMIN_ENDPOINT_PREFIX = "/admin_"
_INLINE = (b"gradio_config = ", b"gradio_api_info = ")


def prune_layout(node: dict, hidden: Collection[int]) -> dict:
    """The layout tree without the nodes whose ids are hidden (and so without their subtrees)."""
    if "children" not in node:
        return dict(node)
    children = [prune_layout(c, hidden) for c in node["children"] if c.get("id") not in hidden]
    return {**node, "children": children}


def kept_dependencies(dependencies: list[dict], hidden: Collection[int]) -> list[dict]:
    """Events that touch no hidden component (as a trigger, an input or an output) and follow no dropped event;
    the ones kept cancel only events that are kept."""
    hidden = frozenset(hidden)
    dropped: set[int] = set()
    kept: list[dict] = []
    for dep in dependencies:  # events come in order: a .then() follows the event it chains to
        touched = (
            {t[0] for t in dep.get("targets", []) if t}
            | set(dep.get("inputs", []))
            | set(dep.get("outputs", []))
        )
        if touched & hidden or dep.get("trigger_after") in dropped:
            dropped.add(dep["id"])
        else:
            kept.append(dep)
    return [{**dep, "cancels": [c for c in dep.get("cancels", []) if c not in dropped]} for dep in kept]


def labelers_config(config: dict, hidden: Collection[int]) -> dict:
    """`config` (Gradio's, as `/config` sends it) without the hidden components, their layout and their events,
    on the top level and on every page."""
    hidden = frozenset(hidden)
    deps = kept_dependencies(config.get("dependencies", []), hidden)
    dep_ids = {d["id"] for d in deps}
    out = {
        **config,
        "components": [c for c in config.get("components", []) if c.get("id") not in hidden],
        "dependencies": deps,
    }
    if "layout" in config:
        out["layout"] = prune_layout(config["layout"], hidden)
    if isinstance(config.get("page"), dict):
        out["page"] = {
            name: {
                **page,
                "layout": prune_layout(page.get("layout", {}), hidden),
                "components": [i for i in page.get("components", []) if i not in hidden],
                "dependencies": [i for i in page.get("dependencies", []) if i in dep_ids],
            }
            for name, page in config["page"].items()
        }
    return out


def labelers_info(info: dict) -> dict:
    """Gradio's API description without the admin endpoints and the unnamed ones."""
    named = info.get("named_endpoints", {})
    kept = {k: v for k, v in named.items() if not k.startswith(ADMIN_ENDPOINT_PREFIX)}
    return {**info, "named_endpoints": kept, "unnamed_endpoints": {}}


def labelers_page(html: bytes, hidden: Collection[int]) -> bytes:
    """The page's HTML with its inline config and API description filtered (`labelers_config`,
    `labelers_info`), written back as Gradio writes them (JSON with <, >, & and ' escaped)."""
    filters: dict[bytes, Callable[[dict], dict]] = {
        _INLINE[0]: lambda c: labelers_config(c, hidden),
        _INLINE[1]: labelers_info,
    }
    for marker, transform in filters.items():
        html = _replace_inline(html, marker, transform)
    return html


def _replace_inline(html: bytes, marker: bytes, transform: Callable[[dict], dict]) -> bytes:
    at = html.find(marker)
    if at < 0:
        return html
    start = at + len(marker)
    text = html[start:].decode("utf-8")
    value, length = json.JSONDecoder().raw_decode(text)
    if not isinstance(value, dict):
        return html
    end = start + len(text[:length].encode("utf-8"))
    return html[:start] + _html_safe_json(transform(value)) + html[end:]


def _html_safe_json(value: dict) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return text.encode("utf-8")
