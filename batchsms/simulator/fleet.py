"""The simulator's task store: the migration tasks it serves, and what each one received.

Three ways to get a fleet:

- ``Fleet.open()``: every task id exists; a task is created the first time it is shown or updated
  (``run --simulate``);
- ``Fleet.generate(n, seed)``: exactly ``n`` tasks with uuid-like ids, drawn from ``seed``;
- ``Fleet.from_jsonl(path)``: exactly the tasks of a JSONL file, one task object per line, each with
  a string ``id`` of 1-36 characters. Fields a line leaves out are filled in as below.

A task's speed-limit rules (UpdateSpeed, docs/reference.md §11) are kept apart from its fields:
ShowTask never shows them (its ``speed_limit`` is the flat integer), ShowsSpeedLimits and
UpdateSpeed read and replace them. In a fleet file they are the task object's
``speed_limit_rules`` key, a list checked as UpdateSpeed checks a body; ``Fleet.write_jsonl``
writes a fleet back in the same format (fields as stored, rules included), so a rehearsal's end
state can start the next one.

Memory stays flat however large the fleet: a task is stored as its id plus the updates applied to
it (``None`` until the first one). Everything else ShowTask returns is *synthesized* on demand from
a hash of (seed, id), so a task always looks the same, and varies across the fleet (state, name,
OS, speed limit, enterprise project...). The stored task is synthesized fields, then the file's
object, then the updates, deep-merged in that order (objects merge key by key; arrays and scalars
replace). An update's ``enterprise_project`` also sets ``enterprise_project_id``: UpdateTask and
ShowTask name the same thing differently. ShowTask and ListTasks answer the stored task cut down
to the official SDK's models (views.py): an update-only field is kept but never shown.

Refusals the service makes (`Fleet.refusal`): the reference page (Table 3) allows a
``clone_server`` update only while the source server is syncing, pausing, paused, starting,
finished or in error; the simulator reads those as the SDK's source-server states ``syncing``,
``stopping``, ``stopped``, ``cutovering``, ``finished`` and ``error``, and refuses the others, by
the task's state alone: an open fleet's task not yet shown or updated is judged as it will look
once it is.

`TaskCounts` record, per task id, how many writes (UpdateTask's PUT, UpdateSpeed's POST) reached
the server (whatever happened to them: faulted, rejected, unknown id) and how many were applied,
for tests to compare with a client's ``attempts``.

Size (~320 lines): one job, the store; a third of it is `_synthesize`, the table of what a task
looks like, which only the store reads.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from batchsms.lines.reader import MAX_TASK_ID, json_error_at
from batchsms.lines.speed_rules import validate_speed_limit
from batchsms.simulator.views import LIST_ITEM, SHOW_TASK, project

__all__ = ["CLONE_SERVER_STATES", "STATES", "Fleet", "TaskCounts", "merge_into"]

# ListTasks' enumeration of migration task states.
STATES = ("READY", "RUNNING", "SYNCING", "MIGRATE_SUCCESS", "MIGRATE_FAIL", "ABORTING", "ABORT",
          "DELETING", "SYNC_F_ROLLBACKING", "SYNC_F_ROLLBACK_SUCCESS")
# Table 3: the source-server states in which clone_server may be updated (see the docstring).
CLONE_SERVER_STATES = ("syncing", "stopping", "stopped", "cutovering", "finished", "error")
# The source server's state for each task state (RUNNING: replicating or syncing).
_SOURCE_STATES = {"READY": "waiting", "RUNNING": "replicate", "SYNCING": "syncing",
                  "MIGRATE_SUCCESS": "finished", "MIGRATE_FAIL": "error",
                  "ABORTING": "stopping", "ABORT": "stopped", "DELETING": "deleting",
                  "SYNC_F_ROLLBACKING": "clearing", "SYNC_F_ROLLBACK_SUCCESS": "cleared"}

_ROLES = ("web", "db", "app", "cache", "batch", "mail", "file", "ldap")
_SPEED_LIMITS = (0, 0, 50, 100, 200, 300, 500, 1000)
_ENTERPRISE_PROJECTS = ("0", "b7a1c0de-0000-4000-8000-00000000e001",
                        "b7a1c0de-0000-4000-8000-00000000e002")
_EPOCH_MS = 1_598_435_778_000  # the reference page's example create_date
_THREE_YEARS_MS = 3 * 365 * 24 * 3600 * 1000
RULES_KEY = "speed_limit_rules"  # a fleet file's task: its UpdateSpeed rules
Rules = list[dict[str, Any]]  # a name of its own: inside Fleet, `list` is Fleet.list


@dataclass(slots=True)
class TaskCounts:
    """Writes (PUT, UpdateSpeed's POST) for one task id: received (any outcome) and applied
    (answered 200)."""

    received: int = 0
    applied: int = 0


def merge_into(dst: dict[str, Any], src: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``src`` into ``dst`` in place: objects key by key, everything else replaced."""
    for key, value in src.items():
        old = dst.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merge_into(old, value)
        elif isinstance(value, dict):
            dst[key] = merge_into({}, value)  # never alias the caller's nested objects
        else:
            dst[key] = value
    return dst


def _synthesize(task_id: str, seed: int, project_id: str) -> dict[str, Any]:
    """The ShowTask fields of a task nobody described: stable for (seed, id), varied across ids."""
    h = hashlib.blake2b(f"{seed}\0{task_id}".encode(), digest_size=24).digest()
    windows = h[1] % 3 == 0
    os_type = "WINDOWS" if windows else "LINUX"
    os_version = "WINDOWS2016_64BIT" if windows else ("CENTOS7_64BIT", "UBUNTU20_64BIT")[h[2] & 1]
    name = f"{_ROLES[h[4] % len(_ROLES)]}-{int.from_bytes(h[5:7], 'big') % 1000:03d}"
    created = _EPOCH_MS + int.from_bytes(h[12:16], "big") % _THREE_YEARS_MS
    state = STATES[h[0] % len(STATES)]
    source_state = "syncing" if state == "RUNNING" and h[6] & 1 else _SOURCE_STATES[state]
    usage = float(h[18] % 50)
    source_id = str(uuid.UUID(bytes=h[8:24], version=4))
    return {
        "id": task_id,
        "name": name,
        "type": "MIGRATE_BLOCK" if windows or h[3] & 1 else "MIGRATE_FILE",
        "os_type": os_type,
        "state": state,
        "priority": h[3] % 3,
        "speed_limit": _SPEED_LIMITS[h[7] % len(_SPEED_LIMITS)],
        "migrate_speed": 0.0 if state != "RUNNING" else float(h[9] % 120),
        "compress_rate": 0.0,
        "start_target_server": bool(h[10] & 1),
        "enterprise_project_id": _ENTERPRISE_PROJECTS[h[11] % len(_ENTERPRISE_PROJECTS)],
        "migration_ip": f"192.168.{h[12]}.{h[13] % 254 + 1}",
        "region_id": "cn-north-4",
        "region_name": "CN North-Beijing4",
        "project_name": "cn-north-4",
        "project_id": project_id,
        "vm_template_id": None,
        "create_date": created,
        "start_date": created + 6000,
        "finish_date": created + 3_600_000 if state == "MIGRATE_SUCCESS" else None,
        "estimate_complete_time": None,
        "total_time": h[14] * 60,
        "remain_seconds": 0,
        "connected": state not in ("MIGRATE_FAIL", "ABORT"),
        "error_json": "",
        "float_ip": None,
        "target_snapshot_id": None,
        "need_migration_test": False,
        "source_server": {
            "id": source_id,
            "ip": f"10.{h[15]}.{h[16]}.{h[17] % 254 + 1}",
            "name": name,
            "os_type": os_type,
            "os_version": os_version,
            "oem_system": False,
            "state": source_state,
            "migration_cycle": "replicating" if state == "RUNNING" else "ready",
        },
        "target_server": {
            "id": str(uuid.UUID(bytes=h[::-1][:16], version=4)),
            "vm_id": "",
            "name": f"{name}-target",
            "ip": None,
            "os_type": os_type,
            "os_version": os_version,
            "system_dir": "C:\\Windows" if windows else "/boot",
            "disks": [],
            "volume_groups": [],
            "btrfs_list": [],
            "image_disk_id": None,
            "cutovered_snapshot_ids": None,
        },
        "clone_server": None,
        "sub_tasks": [],
        "network_check_info": {
            "domain_connectivity": True, "destination_connectivity": state != "MIGRATE_FAIL",
            "network_delay": float(h[19] % 40), "network_jitter": float(h[20] % 5),
            "migration_speed": float(h[21] % 120), "loss_percentage": 0.0,
            "cpu_usage": usage, "mem_usage": float(h[22] % 80), "evaluation_result": "OK"},
        "total_cpu_usage": usage, "agent_cpu_usage": usage / 10,
        "total_mem_usage": float(h[22] % 80), "agent_mem_usage": 1.5,
        "total_disk_io": float(h[23] % 30), "agent_disk_io": 0.5,
        "subtask_info": "",
        "log_collect_status": "INIT",
        "syncing": source_state == "syncing",
        "special_config": [],
    }


class Fleet:
    """Tasks by id (in fleet order), the updates applied to them, and per-id PUT counts."""

    __slots__ = ("_described", "_open", "_project_id", "_rules", "_seed", "_updates", "counts")

    def __init__(self, *, open_fleet: bool, seed: int = 0) -> None:
        self._open = open_fleet
        self._seed = seed
        self._project_id = hashlib.blake2b(f"project\0{seed}".encode(), digest_size=16).hexdigest()
        self._updates: dict[str, dict[str, Any] | None] = {}  # id -> applied updates
        self._described: dict[str, dict[str, Any]] = {}  # id -> object from --fleet
        self._rules: dict[str, Rules] = {}  # id -> UpdateSpeed rules, when any
        self.counts: dict[str, TaskCounts] = {}

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def open(cls, seed: int = 0) -> Fleet:
        """Every id exists, created on first use."""
        return cls(open_fleet=True, seed=seed)

    @classmethod
    def generate(cls, n: int, seed: int = 0) -> Fleet:
        """Exactly ``n`` tasks, ids and contents drawn from ``seed``."""
        if n < 0:
            raise ValueError(f"cannot generate {n} tasks")
        fleet = cls(open_fleet=False, seed=seed)
        rng = random.Random(seed)
        while len(fleet._updates) < n:
            fleet._updates[str(uuid.UUID(int=rng.getrandbits(128), version=4))] = None
        return fleet

    @classmethod
    def from_jsonl(cls, path: Path, seed: int = 0) -> Fleet:
        """Exactly the tasks of a JSONL file; ValueError naming the line when one is unusable."""
        fleet = cls(open_fleet=False, seed=seed)
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                line = raw.strip()
                if not line:
                    continue
                try:
                    task = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not valid JSON {json_error_at(exc)}"
                                     ) from None
                task_id = task.get("id") if isinstance(task, dict) else None
                if not isinstance(task_id, str) or not 1 <= len(task_id) <= MAX_TASK_ID:
                    raise ValueError(f"{path}:{number}: a task object with a string 'id' of "
                                     f"1 to {MAX_TASK_ID} characters is required")
                if task_id in fleet._updates:
                    raise ValueError(f"{path}:{number}: task id {task_id!r} appears twice")
                fleet._updates[task_id] = None
                rules = task.pop(RULES_KEY, None)
                if rules is not None:
                    clean, problems = validate_speed_limit({"speed_limit": rules}, RULES_KEY)
                    if problems:
                        shown = "; ".join(  # the file's own key, not the body's path
                            p.path.replace(f"{RULES_KEY}.speed_limit", RULES_KEY, 1)
                            + f": {p.message}" for p in problems)
                        raise ValueError(f"{path}:{number}: {shown}")
                    if clean["speed_limit"]:
                        fleet._rules[task_id] = clean["speed_limit"]
                fleet._described[task_id] = task
        return fleet

    # -- queries --------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._updates)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._updates

    def __iter__(self) -> Iterator[str]:
        return iter(self._updates)

    def exists(self, task_id: str) -> bool:
        """Whether requests for this id are served (always true for an open fleet)."""
        return self._open or task_id in self._updates

    def show(self, task_id: str) -> dict[str, Any] | None:
        """The task as ShowTask returns it (a fresh dict), or None when it does not exist."""
        if task_id not in self._updates:
            if not self._open:
                return None
            self._updates[task_id] = None
        return project(self._view(task_id), SHOW_TASK)

    def stored(self, task_id: str) -> dict[str, Any] | None:
        """Everything the task holds, update-only fields included (tests); None if unknown."""
        return self._view(task_id) if task_id in self._updates else None

    def _view(self, task_id: str) -> dict[str, Any]:
        view = _synthesize(task_id, self._seed, self._project_id)
        described = self._described.get(task_id)
        if described is not None:
            merge_into(view, described)
        updates = self._updates.get(task_id)  # an open fleet's task not yet materialised: none
        if updates is not None:
            merge_into(view, updates)
        view["id"] = task_id
        return view

    def list(self, filters: Mapping[str, str], limit: int,
             offset: int) -> tuple[int, list[dict[str, Any]]]:
        """(number of tasks matching every filter, the page ``[offset:offset+limit]`` of them)."""
        if "id" in filters:
            candidates: list[str] = [filters["id"]] if filters["id"] in self._updates else []
        else:
            candidates = list(self._updates)
        rest = {k: v for k, v in filters.items() if k != "id"}
        if not rest:
            count = len(candidates)
            page = [self._view(t) for t in candidates[offset:offset + limit]]
        else:
            matching = [view for view in map(self._view, candidates) if _matches(view, rest)]
            count, page = len(matching), matching[offset:offset + limit]
        return count, [project(view, LIST_ITEM) for view in page]

    def rules(self, task_id: str) -> Rules | None:
        """The task's speed-limit rules (a fresh list, [] when it has none); None when the task
        does not exist."""
        if not self.exists(task_id):
            return None
        return [dict(rule) for rule in self._rules.get(task_id, ())]  # rules are flat objects

    def write_jsonl(self, path: Path) -> None:
        """Write the fleet as a ``--fleet`` file: each task's stored fields and its rules (an
        open fleet: the tasks used so far)."""
        with path.open("wb") as fh:
            for task_id in self._updates:
                task = self._view(task_id)
                rules = self._rules.get(task_id)
                if rules:
                    task[RULES_KEY] = rules
                fh.write(orjson.dumps(task) + b"\n")

    # -- updates --------------------------------------------------------------------------------

    def received(self, task_id: str) -> TaskCounts:
        """Count one PUT for this id (called as it arrives); returns its counters."""
        counts = self.counts.get(task_id)
        if counts is None:
            counts = self.counts[task_id] = TaskCounts()
        counts.received += 1
        return counts

    def refusal(self, task_id: str, body: Mapping[str, Any]) -> str | None:
        """Why the service would refuse this (validated) update of an existing task, or None."""
        if not body.get("clone_server") or not self.exists(task_id):
            return None
        # The task's state, whether or not a request has materialised it yet: an open fleet's
        # task is drawn from (seed, id) alone, so a read first or a write first see one task.
        source = self._view(task_id).get("source_server")
        state = source.get("state") if isinstance(source, dict) else None
        if state in CLONE_SERVER_STATES:
            return None
        return (f"clone_server can be updated only while the source server is "
                f"{', '.join(CLONE_SERVER_STATES)}; it is {state}")

    def apply(self, task_id: str, body: Mapping[str, Any]) -> bool:
        """Deep-merge a validated body into the task; False when the task does not exist."""
        if task_id not in self._updates and not self._open:
            return False
        updates = self._updates.get(task_id)
        if updates is None:
            updates = self._updates[task_id] = {}
        merge_into(updates, body)
        project = body.get("enterprise_project")
        if isinstance(project, str):
            updates["enterprise_project_id"] = project
        self._applied(task_id)
        return True

    def set_rules(self, task_id: str, rules: Rules) -> bool:
        """Replace the task's speed-limit rules with validated ones ([] clears them); False
        when the task does not exist."""
        if not self.exists(task_id):
            return False
        self._updates.setdefault(task_id, None)  # an open fleet's task exists from now on
        if rules:
            self._rules[task_id] = [dict(rule) for rule in rules]  # never alias the caller's
        else:
            self._rules.pop(task_id, None)
        self._applied(task_id)
        return True

    def _applied(self, task_id: str) -> None:
        counts = self.counts.get(task_id)
        if counts is None:
            counts = self.counts[task_id] = TaskCounts()
        counts.applied += 1


def _matches(view: Mapping[str, Any], filters: Mapping[str, str]) -> bool:
    for key, wanted in filters.items():
        if key == "source_server_id":
            source = view.get("source_server")
            if not isinstance(source, dict) or source.get("id") != wanted:
                return False
        elif view.get(key) != wanted:
            return False
    return True
