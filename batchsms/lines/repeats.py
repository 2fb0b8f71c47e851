"""Task ids that come back on later lines: how many, and the first few, in bounded memory.

Several lines for one task are allowed (they are sent one after the other, in file order, and
the task ends as the last one leaves it), but they are often a slip: a fleet listed twice, a
file appended to itself, two generators writing one input. `validate` says so on stderr: the
number of task ids on more than one line, the lines that repeat one, and the first examples
with their line numbers (docs/reference.md §4).

Memory stays bounded: the first `REMEMBERED` distinct task ids are remembered, each as its
`hash()` and its first line (~130 bytes with the table: ~8.5 MB at most, which keeps
`validate`'s peak RSS within bench_validate's 15 MB from 20 000 to 200 000 lines); an id first
seen after that is not remembered, so a repeat of it is not seen (`complete` is then False, and
the notice says up to which id it looked). Two ids with one 64-bit hash would be taken for one:
about one chance in 10^9 for the largest fleet remembered.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REMEMBERED", "RepeatedIds"]

REMEMBERED = 65_536
EXAMPLES = 3  # task ids shown
EXAMPLE_LINES = 5  # line numbers shown per task id


class RepeatedIds:
    """Feed `see(task_id, line)` every line in order; then `ids`, `lines`, `examples`."""

    __slots__ = ("_first", "_limit", "complete", "examples", "ids", "lines")

    def __init__(self, limit: int = REMEMBERED) -> None:
        self._limit = limit
        # hash -> first line; negated once the id was seen again (counted in `ids` once)
        self._first: dict[int, int] = {}
        self.ids = 0  # task ids on more than one line
        self.lines = 0  # lines whose task id an earlier line had
        self.examples: dict[str, list[int]] = {}  # the first EXAMPLES ids -> their first lines
        self.complete = True  # every id was remembered

    def see(self, task_id: str, line: int) -> None:
        key = hash(task_id)
        first = self._first.get(key)
        if first is None:
            if len(self._first) < self._limit:
                self._first[key] = line
            else:
                self.complete = False
            return
        self.lines += 1
        if first > 0:  # its first repeat
            self.ids += 1
            self._first[key] = -first
            if len(self.examples) < EXAMPLES:
                self.examples[task_id] = [first]
        shown = self.examples.get(task_id)
        if shown is not None and len(shown) <= EXAMPLE_LINES:  # one more: "..." if there is
            shown.append(line)

    def notice(self) -> dict[str, Any] | None:
        """The fields of the notice, or None when no task id came back."""
        if not self.ids:
            return None
        fields: dict[str, Any] = {
            "task_ids": self.ids, "repeating_lines": self.lines,
            "examples": [f"{task_id} on lines {', '.join(map(str, lines[:EXAMPLE_LINES]))}"
                         f"{'...' if len(lines) > EXAMPLE_LINES else ''}"
                         for task_id, lines in self.examples.items()],
            "meaning": "the lines of one task are sent one after the other, in file order; "
                       "the task ends as the last one leaves it"}
        if not self.complete:
            fields["looked_among_first_task_ids"] = self._limit
        return fields
