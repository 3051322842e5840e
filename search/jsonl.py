"""Append-only JSON-lines files that survive `kill -9`: the run journal and the LLM transcript.

Each record is one line written with a single `write` and fsync'd before `append` returns, so a
killed process leaves at most one torn line at the end. The reader drops a torn last line and
refuses a damaged line anywhere else: that would be corruption, not a crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class JournalCorrupt(RuntimeError):
    """A line other than the last one does not parse."""


class JsonlWriter:
    """Appends one JSON object per line, durably, from any thread."""

    def __init__(self, path: Path, *, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._lock = threading.Lock()
        _drop_torn_tail(self.path)

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, default=_json_default) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete records of a JSONL file; a torn final line (a crash mid-write) is ignored."""
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except json.JSONDecodeError as err:
            if i == last:  # no trailing newline: the write that made it was cut short
                return
            raise JournalCorrupt(f"{path}:{i + 1}: unreadable record: {err}") from err


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line so new records do not get glued onto it."""
    if not path.exists():
        return
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "value"):  # Enum
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} to a journal")
