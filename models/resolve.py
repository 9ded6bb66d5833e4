"""Resolve a model name to a local folder: `default` (the embedded model), a local path, or a Hub id.

from models.resolve import resolve_model
path = resolve_model("default", home=Path("runs"))
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from models import embedded

DEFAULT_MODEL = "default"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]


class ModelResolutionError(ValueError):
    """A model name could not be turned into a loadable folder; the message says what was tried."""


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _check_folder(path: Path, name: str) -> Path:
    if not path.is_dir():
        raise ModelResolutionError(f"model {name!r}: tried local path {path}: no such folder")
    if not (path / "config.json").is_file():
        raise ModelResolutionError(
            f"model {name!r}: tried local path {path}: folder has no config.json (not a transformers checkpoint)"
        )
    return path


def _from_hub(name: str) -> Path:
    from huggingface_hub import snapshot_download

    # Bounded timeouts so an unreachable hub fails fast instead of hanging.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return Path(snapshot_download(name, allow_patterns=_HUB_FILES))
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelResolutionError(
            f"model {name!r}: not a local folder, tried the Hugging Face Hub and the local Hub cache: "
            f"{first_line}. Use 'default' for the embedded SmolLM2-135M-Instruct, or a local checkpoint path."
        ) from exc


def resolve_model(name: str, *, home: Path) -> Path:
    """Return a local folder holding the checkpoint for `name`.

    `default` prepares (once) and returns the embedded SmolLM2-135M-Instruct; an existing folder is used as is;
    a string shaped like `owner/name` is fetched from the Hub (fails fast where no hub is reachable).
    """
    if not name or not name.strip():
        raise ModelResolutionError("model name is empty: use 'default', a local path or a Hub id")
    if name == DEFAULT_MODEL:
        return embedded.prepare(home)
    path = Path(name).expanduser()
    if path.exists() or _looks_like_path(name):
        return _check_folder(path, name)
    if _HUB_ID.match(name):
        return _from_hub(name)
    raise ModelResolutionError(
        f"model {name!r}: tried local path {path} (does not exist); not a Hub id of the form 'owner/name'"
    )
