r"""batchsms: apply many UpdateTask calls to Huawei Cloud SMS safely and fast.

The public Python API (CONTRACT §12; README "Python API") is what this module exports; every
other module is private. The CLI (`batchsms`, cli.py and `commands/`) drives the same engine::

    async with batchsms.Client(endpoint) as client:
        async for outcome in client.run(updates):
            ...
    problems = batchsms.validate(update)

The flow, one module per stage::

    records -> schema -> plan -> limiter -> client (+ retry, signing) -> outcomes
               \_________________ engine/pipeline wires them _________________/

`api.py` holds `Client`; the commands that drive the flow are in `commands/`; `cli.py` parses
their options.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from batchsms.api import Client, Update, Updates, run_sync, validate
    from batchsms.commands.plan import PlanEntry, Verdict
    from batchsms.credentials import AkSkCredentials, Credentials, TokenCredentials
    from batchsms.errors import (
        AbortedError,
        BatchSmsError,
        CredentialsError,
        EventLoopRunningError,
        UsageError,
    )
    from batchsms.outcomes import Outcome, Status
    from batchsms.schema import Problem

# Imported on first use: the CLI (`batchsms --help`, `validate`) must not pay for the client
# and the engine; a script's `batchsms.Client` loads them.
_WHERE = {
    "Client": "api", "Update": "api", "Updates": "api", "run_sync": "api", "validate": "api",
    "PlanEntry": "commands.plan", "Verdict": "commands.plan",
    "AkSkCredentials": "credentials", "Credentials": "credentials",
    "TokenCredentials": "credentials",
    "AbortedError": "errors", "BatchSmsError": "errors", "CredentialsError": "errors",
    "EventLoopRunningError": "errors", "UsageError": "errors",
    "Outcome": "outcomes", "Status": "outcomes",
    "Problem": "schema",
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
