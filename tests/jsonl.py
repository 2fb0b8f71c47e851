"""JSONL files as tests write them (inputs, fleets, journals) and read them back (outcomes)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | bytes | str]) -> Path:
    """One line per row: a dict as JSON, bytes or text as given; every line ends in a newline."""
    path.write_bytes(b"".join(
        (orjson.dumps(row) if isinstance(row, dict) else
         row.encode() if isinstance(row, str) else row) + b"\n" for row in rows))
    return path


def read_jsonl(path: Path, *, missing_ok: bool = False,
               skip_cut: bool = False) -> list[dict[str, Any]]:
    """Every record of a JSONL file (read whole: an invalid line's record may be large), blank
    lines skipped. `missing_ok`: no file is no records. `skip_cut`: drop what does not parse
    (a record cut by a kill)."""
    if missing_ok and not path.exists():
        return []
    records = []
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        try:
            records.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            if not skip_cut:
                raise
    return records
