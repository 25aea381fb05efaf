"""Reading journals for `report`: streamed, bounded, never fatal on a bad line.

A journal can be hundreds of megabytes, end in a line torn by a crash (possibly
a huge one with no newline), or hold lines a human edited. `stream_journal`
reads it in fixed-size chunks and yields one decoded event per line; a line
that is not a JSON object, or longer than `MAX_LINE` bytes, yields `None` so the
report can count it as skipped. Memory stays bounded by the chunk and
`MAX_LINE`, whatever the file holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agent.errors import UsageError

CHUNK = 1 << 20  # bytes read at a time
MAX_LINE = 1 << 20  # a longer line is skipped (and counted), never held in memory
JOURNAL_GLOB = "*.jsonl"

_raw_decode = json.JSONDecoder().raw_decode  # skips json.loads' per-call overhead


def _decode(line: bytes) -> dict[str, Any] | None:
    try:
        text = line.decode("utf-8").strip()
        value, end = _raw_decode(text)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError; RecursionError below
        return None
    except RecursionError:
        return None
    if end != len(text) or not isinstance(value, dict):
        return None
    return value


def stream_journal(path: Path) -> Iterator[dict[str, Any] | None]:
    """Each line's event across the rotated set (journal.jsonl.N .. journal.jsonl, oldest
    first); `None` for a line that cannot be one."""
    from agent.journal import journal_files

    files = journal_files(path) or [path]
    for file in files:
        try:
            yield from _stream_file(file)
        except FileNotFoundError:  # rotated away while we listed
            if file == path and len(files) == 1:
                raise


def _stream_file(path: Path) -> Iterator[dict[str, Any] | None]:
    with open(path, "rb") as fh:
        rest = b""
        oversize = False  # inside a line already longer than MAX_LINE: drop until newline
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                break
            start = 0
            while True:
                nl = chunk.find(b"\n", start)
                if nl < 0:
                    tail = chunk[start:]
                    if oversize or len(rest) + len(tail) > MAX_LINE:
                        if not oversize:
                            yield None
                        oversize, rest = True, b""
                    else:
                        rest += tail
                    break
                piece = chunk[start:nl]
                start = nl + 1
                if oversize:
                    oversize = False
                    continue
                line = rest + piece if rest else piece
                rest = b""
                if len(line) > MAX_LINE:
                    yield None
                elif line.strip():
                    yield _decode(line)
        if rest.strip() and not oversize:
            yield _decode(rest)  # a torn last line usually fails to decode: counted


def journal_paths(given: Sequence[str]) -> list[Path]:
    """The journals named: files as given, directories expanded to their *.jsonl files."""
    paths: list[Path] = []
    for raw in given:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.glob(JOURNAL_GLOB) if p.is_file())
            if not found:
                raise UsageError(f"directory {path} holds no {JOURNAL_GLOB} journal")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise UsageError(f"journal {path} does not exist", hint="pass --journal PATH")
    return paths
