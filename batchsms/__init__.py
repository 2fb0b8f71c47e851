r"""batchsms: apply many UpdateTask calls to Huawei Cloud SMS safely and fast.

The public Python API (docs/reference.md §12; README "Python API") is what this module
exports; every other module is private. The CLI (`batchsms`, cli.py and `commands/`) drives
the same engine::

    async with batchsms.Client(endpoint) as client:
        async for outcome in client.run(updates):
            ...
    problems = batchsms.validate(update)

The house, one package per stage of a line's way (lower ones never import higher ones;
tests/test_layout.py checks it)::

    lines/      reader (JSONL -> lines), schema (the body schema as data), bodies (the body to
                send, its hash), expect, diff and readable (a body against a task's view)
    transport/  client (one HTTP exchange, errors mapped once), signing, credentials, endpoint,
                untrusted (bounding and cleaning what servers send)
    journal/    outcomes (the record, the writer, the lock, reading), resume (what is done)
    engine/     bucket, retry, budget, pace, admission, outage, ordering, sender, pipeline, build
    changes/    readback (ShowTask -> view), guarded_put (skip/verify/expect), preview (plan),
                undo, undo_log
    simulator/  the local endpoint
    client.py   the library's `Client`: transport + engine + journal for one caller
    commands/   one module per command and every CLI-only concern (logs, progress, metrics,
                signals, process limits, exit codes, output paths); cli.py parses options
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from batchsms.changes.preview import PlanEntry, Verdict
    from batchsms.client import Client, Update, Updates, run_sync, validate
    from batchsms.errors import (
        AbortedError,
        BatchSmsError,
        CredentialsError,
        EventLoopRunningError,
        UsageError,
    )
    from batchsms.journal.outcomes import Outcome, Status
    from batchsms.lines.schema import Problem
    from batchsms.transport.credentials import AkSkCredentials, Credentials, TokenCredentials

# Imported on first use: the CLI (`batchsms --help`, `validate`) must not pay for the client
# and the engine; a script's `batchsms.Client` loads them.
_WHERE = {
    "Client": "client", "Update": "client", "Updates": "client", "run_sync": "client",
    "validate": "client",
    "PlanEntry": "changes.preview", "Verdict": "changes.preview",
    "AkSkCredentials": "transport.credentials", "Credentials": "transport.credentials",
    "TokenCredentials": "transport.credentials",
    "AbortedError": "errors", "BatchSmsError": "errors", "CredentialsError": "errors",
    "EventLoopRunningError": "errors", "UsageError": "errors",
    "Outcome": "journal.outcomes", "Status": "journal.outcomes",
    "Problem": "lines.schema",
}

__all__ = [
    "AbortedError",
    "AkSkCredentials",
    "BatchSmsError",
    "Client",
    "Credentials",
    "CredentialsError",
    "EventLoopRunningError",
    "Outcome",
    "PlanEntry",
    "Problem",
    "Status",
    "TokenCredentials",
    "Update",
    "Updates",
    "UsageError",
    "Verdict",
    "__version__",
    "run_sync",
    "validate",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
