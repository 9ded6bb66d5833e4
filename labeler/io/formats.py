"""Reading records from files with precise errors: JSONL (optionally .gz), CSV, plain text, Parquet, and
`datasets` folders. Every error names the file, the line (or row) and the field.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("system", "user", "assistant")


class ImportFormatError(ValueError):
    """A malformed input file. `str()` reads `FILE:LINE: field 'F': what is wrong`."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}:{line}" if line is not None else f"{path}"
        what = f"field '{field}': {message}" if field else message
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class Record:
    """One input record and where it came from (line for text files, row for tables)."""

    data: dict
    line: int


MAX_TEXT_CHARS = 100_000  # one message, prompt or answer


MAX_LINE_BYTES = 4 << 20  # one record: a few texts of MAX_TEXT_CHARS, JSON-escaped
MAX_DECOMPRESSED_BYTES = 512 << 20  # a .gz file, expanded, at most this
MAX_GZIP_RATIO = 200  # ... and at most this many times its own size (text compresses 3-20x) ...
MIN_DECOMPRESSED_LIMIT = 16 << 20  # ... but a small file may always expand to this


def _open_bytes(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def decompressed_limit(path: Path) -> int | None:
    """How many bytes a .gz file may expand to (None: not compressed): MAX_GZIP_RATIO times its size, within
    MIN_DECOMPRESSED_LIMIT and MAX_DECOMPRESSED_BYTES."""
    if path.suffix != ".gz":
        return None
    by_ratio = MAX_GZIP_RATIO * path.stat().st_size
    return min(MAX_DECOMPRESSED_BYTES, max(MIN_DECOMPRESSED_LIMIT, by_ratio))


def _bounded_lines(fh: io.BufferedIOBase, path: Path) -> Iterator[tuple[int, bytes]]:
    """Raw lines, each read at most MAX_LINE_BYTES (+1) at a time, and the total held to `decompressed_limit`:
    a longer line or a bigger expansion is refused before it is decoded or held in memory."""
    limit = decompressed_limit(path)
    total = 0
    for number in itertools.count(1):
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES:
            raise ImportFormatError(path, number, None, f"the line is longer than {MAX_LINE_BYTES:,} bytes")
        total += len(raw)
        if limit is not None and total > limit:
            raise ImportFormatError(
                path,
                number,
                None,
                f"the file decompresses to more than {limit:,} bytes ({MAX_GZIP_RATIO} times its size, at most "
                f"{MAX_DECOMPRESSED_BYTES:,}): split it, or import it uncompressed",
            )
        yield number, raw


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Lines as text, bounded (`_bounded_lines`); a UTF-8 byte-order mark on the first line is dropped."""
    number = 0
    try:
        with _open_bytes(path) as fh:
            for number, raw in _bounded_lines(fh, path):
                try:
                    yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    raise ImportFormatError(
                        path, number, None, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"
                    ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ImportFormatError(path, number or None, None, f"not a valid gzip file ({exc})") from None


def unencodable_field(value: object, where: str = "") -> str | None:
    """The first field (as `messages[0].content`) whose text cannot be stored as UTF-8 (a lone surrogate that a
    JSON escape such as \\ud800 produced), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return where or "(the value)"
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if (bad := unencodable_field(key, name)) or (bad := unencodable_field(item, name)):
                return bad
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if bad := unencodable_field(item, f"{where}[{i}]"):
                return bad
    return None


def bounded_text(value: str, path: Path, line: int, field: str) -> str:
    """`value`, or an error when it is longer than MAX_TEXT_CHARS."""
    if len(value) > MAX_TEXT_CHARS:
        raise ImportFormatError(
            path, line, field, f"is {len(value):,} characters long; at most {MAX_TEXT_CHARS:,} are accepted"
        )
    return value


def read_jsonl(path: Path) -> Iterator[Record]:
    for number, text in _decoded_lines(path):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                path, number, None, f"not valid JSON ({exc.msg}, column {exc.colno})"
            ) from None
        except RecursionError:
            raise ImportFormatError(path, number, None, "JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise ImportFormatError(path, number, None, f"expected a JSON object, got {type(data).__name__}")
        try:
            bad = unencodable_field(data)
        except RecursionError:
            raise ImportFormatError(path, number, None, "JSON nested too deeply") from None
        if bad is not None:
            raise ImportFormatError(
                path, number, bad, "holds a lone surrogate escape (such as \\ud800): not valid Unicode text"
            )
        yield Record(data, number)


def read_csv(path: Path) -> Iterator[Record]:
    lines = (text for _, text in _decoded_lines(path))
    reader = csv.DictReader(lines)
    try:
        for row in reader:
            yield Record(dict(row), reader.line_num)
    except csv.Error as exc:
        raise ImportFormatError(path, reader.line_num + 1, None, f"not valid CSV ({exc})") from None


def read_text(path: Path) -> Iterator[Record]:
    for number, text in _decoded_lines(path):
        if text.strip():
            yield Record({"prompt": text.rstrip("\r\n")}, number)


def read_table(path: Path) -> Iterator[Record]:
    """Parquet files and `datasets` folders (row numbers start at 1)."""
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        if hasattr(dataset, "keys"):  # a DatasetDict: take its splits in order
            rows = (row for split in dataset for row in dataset[split])
        else:
            rows = iter(dataset)
    else:
        import pyarrow.parquet as pq

        try:
            rows = iter(pq.read_table(path).to_pylist())
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise ImportFormatError(path, None, None, f"not a readable Parquet file ({exc!s:.120})") from None
    for number, row in enumerate(rows, 1):
        yield Record(dict(row), number)


@dataclass(frozen=True)
class Source:
    """Where records come from besides a file: a dataset's split (a Hub name or a local dataset folder, read by
    `datasets.load_dataset`), and columns renamed to the fields the importers read (`{"prompt": "question"}`)."""

    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)


def read_dataset(name: str, split: str) -> Iterator[Record]:
    """The rows of `datasets.load_dataset(name, split=split)`; ImportFormatError saying why it would not load."""
    from datasets import load_dataset

    try:
        rows = load_dataset(name, split=split)
    except Exception as exc:  # the hub, the cache and the builders raise many kinds
        raise ImportFormatError(
            name, None, None, f"not a file, and no dataset loads by that name ({exc!s:.160})"
        ) from None
    for number, row in enumerate(rows, 1):
        yield Record(dict(row), number)


def renamed(records: list[Record], columns: dict[str, str], path: Path) -> list[Record]:
    """Each record with `columns` (field -> its column in the data) read under the field's name."""
    if not columns:
        return records
    missing = [c for c in columns.values() if c not in records[0].data]
    if missing:
        raise ImportFormatError(
            path, 1, missing[0], f"no such column (columns: {', '.join(map(str, records[0].data))})"
        )
    return [Record({**r.data, **{f: r.data.get(c) for f, c in columns.items()}}, r.line) for r in records]


def read_records(path: Path, source: Source | None = None) -> list[Record]:
    """Every record of a supported file, a `datasets` folder, a dataset's files or a dataset's name (read by
    `datasets.load_dataset`, `source.split`); ImportFormatError otherwise. An empty input is an error."""
    path, source = Path(path), source or Source()
    if _dataset_name(path) or (path.is_dir() and not _saved_dataset(path)):
        records = list(read_dataset(str(path), source.split))
    elif not path.exists():
        raise ImportFormatError(path, None, None, "no such file or folder")
    else:
        records = _read_file(path)
    if not records:
        raise ImportFormatError(path, None, None, "file is empty (no records)")
    return renamed(records, source.columns, path)


def _dataset_name(path: Path) -> bool:
    """A Hub name (`owner/name`) rather than a missing file."""
    text = str(path)
    return not path.exists() and "/" in text.strip("/") and not text.startswith((".", "/"))


def _saved_dataset(folder: Path) -> bool:
    """A folder `datasets`' save_to_disk wrote (rather than a dataset's data files)."""
    return (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists()


def _read_file(path: Path) -> list[Record]:
    name = path.name.lower().removesuffix(".gz")
    if path.is_dir() or name.endswith(".parquet"):
        records = list(read_table(path))
    elif name.endswith((".jsonl", ".json", ".ndjson")):
        records = list(read_jsonl(path))
    elif name.endswith(".csv"):
        records = list(read_csv(path))
    elif name.endswith(".txt"):
        records = list(read_text(path))
    else:
        raise ImportFormatError(
            path, None, None, "unknown format: use .jsonl[.gz], .csv, .txt, .parquet or a datasets folder"
        )
    return records


def as_messages(
    value: object, path: Path, line: int, field: str, *, default_role: str = "user"
) -> list[dict]:
    """A chat conversation from a string (one message) or a list of {role, content} dicts."""
    if isinstance(value, str):
        if not value.strip():
            raise ImportFormatError(path, line, field, "is empty")
        return [{"role": default_role, "content": bounded_text(value, path, line, field)}]
    if isinstance(value, list) and value:
        out = []
        for i, m in enumerate(value):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
                raise ImportFormatError(
                    path,
                    line,
                    f"{field}[{i}]",
                    f"expected {{'role': one of {ROLES}, 'content': text}}, got {m!r:.80}",
                )
            out.append(
                {"role": m["role"], "content": bounded_text(m["content"], path, line, f"{field}[{i}]")}
            )
        return out
    raise ImportFormatError(path, line, field, f"expected text or a list of messages, got {value!r:.80}")


# Anthropic HH transcripts: "\n\nHuman: ...\n\nAssistant: ..."
HUMAN, ASSISTANT = "\n\nHuman:", "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_transcript(text: str) -> list[dict]:
    """HH transcript text (starting with a Human turn) as chat messages; one leading space per turn is dropped."""
    parts = _TURN.split(text)
    if parts[0] != "" or len(parts) < 3:
        raise ValueError("transcript does not start with '\\n\\nHuman:'")
    role_of = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": role_of[parts[i]], "content": parts[i + 1].removeprefix(" ")}
        for i in range(1, len(parts), 2)
    ]


def to_transcript(messages: list[dict], response: str | None = None) -> str:
    """The inverse of `parse_transcript`, optionally with a final assistant response."""
    name_of = {"user": "Human", "assistant": "Assistant", "system": "Human"}
    text = "".join(f"\n\n{name_of[m['role']]}: {m['content']}" for m in messages)
    return text if response is None else f"{text}{ASSISTANT} {response}"


def split_hh(chosen: str, rejected: str) -> tuple[list[dict], str, str]:
    """Split two HH transcripts at the last Assistant turn they share: (prompt messages, chosen, rejected)."""
    shared = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        shared += 1
    cut = chosen.rfind(ASSISTANT, 0, shared)
    if cut < 0:
        raise ValueError("chosen and rejected share no '\\n\\nAssistant:' turn")
    start = cut + len(ASSISTANT)
    messages = parse_transcript(chosen[:cut])
    return messages, chosen[start:].removeprefix(" "), rejected[start:].removeprefix(" ")
