"""The project's exceptions: one root, translated once at the edges.

    BatchSmsError
    ├── UsageError          bad options, unreadable input, no credentials: exit 2
    │   ├── CredentialsError    no or incomplete credentials
    │   │   ├── NoCredentialsError  none found anywhere (a rehearsal may go on without)
    │   │   └── CredentialSourceError  a pod-identity / metadata / IAM source gave none
    │   └── LockedError         --out is held by another run
    ├── JournalError        an outcome record could not be written (disk full, I/O): exit 4
    ├── AbortedError        a run stopped early (credentials rejected, an outage outlasted
    │   │                   --max-outage, too many lines failed): exit 3; the Python API raises
    │   │                   it after every update's outcome was yielded
    │   └── CredentialsExpiredError  temporary credentials expired and their source
    │                       gave no new ones (exit 3 like an auth abort)
    ├── EventLoopRunningError  `run_sync` called where an event loop runs (also a RuntimeError)
    └── TransportError      one HTTP attempt got no response (client.py maps aiohttp here)
        ├── ConnectError        could not connect, or the connection dropped
        │   └── TlsError            certificate not trusted (not retried)
        └── RequestTimeout      no answer within --timeout

Messages never carry secrets: credentials are redacted before any error is built.
"""

from __future__ import annotations

import enum
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchsms.journal.outcomes import Outcome


class BatchSmsError(Exception):
    """Root of every error batchsms raises on purpose."""


class UsageError(BatchSmsError):
    """The run cannot start as asked; the CLI prints the message and exits 2."""


class CredentialsError(UsageError):
    """No usable credentials were found, or they are incomplete."""


class NoCredentialsError(CredentialsError):
    """None of the places credentials are looked for has any (as opposed to broken ones)."""


class CredentialSourceError(CredentialsError):
    """A configured credential source (CCE pod identity, ECS metadata, IAM's project lookup)
    answered, but not with what was needed; the message names the source and its answer."""


class LockedError(UsageError):
    """The outcomes file is locked by another running batchsms."""


class JournalError(BatchSmsError):
    """Writing the outcomes journal failed: nothing more may be sent (docs/reference.md §7,
    exit 4)."""


class AbortedError(BatchSmsError):
    """A run stopped before its end, for the reason in the message (docs/reference.md §12).

    `outcomes`: with `run_sync`, every update's outcome (the lines cut short are `skipped` or
    `failed` with `error_code` "aborted"); empty when raised by `Client.run` or `Client.plan`,
    whose callers already received them.
    """

    def __init__(self, message: str, *, outcomes: tuple[Outcome, ...] = ()) -> None:
        super().__init__(message)
        self.outcomes = outcomes


class CredentialsExpiredError(AbortedError):
    """Temporary credentials expired while their source kept failing to give new ones: nothing
    more may be signed (docs/reference.md §6); the message names the source and what it
    answered."""


class EventLoopRunningError(BatchSmsError, RuntimeError):
    """`run_sync` was called in a thread where an event loop is running: use `Client`."""


class TransportError(BatchSmsError):
    """An attempt that got no HTTP response at all.

    ``sent`` says whether the request may have reached the server: False only when it certainly
    never left the process (connection refused, no file descriptor, name not resolved), so
    the service cannot have applied it. Such a try is not counted in ``attempts``.

    ``unreachable``: the endpoint itself could not be reached (its name does not resolve, the
    connection was refused, the TLS handshake or certificate failed). Before any answer came in
    a run, that is the configuration, not an outage: the run stops at once (exit 2).
    """

    code = "connection"
    retryable = True

    def __init__(self, message: str, *, sent: bool = True, unreachable: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.unreachable = unreachable


class ConnectError(TransportError):
    """Connection refused, reset or dropped before a response arrived."""

    code = "connection"


class TlsError(ConnectError):
    """The server's certificate is not trusted: trying again cannot help."""

    retryable = False


class RequestTimeout(TransportError):  # noqa: N818 - reads as httpx's ReadTimeout
    """No complete response within the per-request timeout."""

    code = "timeout"


class CredentialsGoneError(TransportError):
    """A request not sent because its temporary credentials expired and their source gave no
    new ones (transport/client.py): the engine stops the run as an auth abort (exit 3)."""

    code = "credentials_expired"
    retryable = False


# -- exit codes (docs/reference.md §7) ------------------------------------------------------------
class ExitCode(enum.IntEnum):
    OK = 0  # every line succeeded (or was already done); validate: every line valid
    SOME_FAILED = 1  # finished; some lines failed, were invalid or skipped
    USAGE = 2  # could not start: options, credentials, input, a locked --out
    ABORTED = 3  # auth rejected, --abort-failure-ratio passed, an outage outlasted its limit
    BROKEN = 4  # outcomes could not be written while running
    SIGINT = 128 + signal.SIGINT  # 130
    SIGTERM = 128 + signal.SIGTERM  # 143

    @classmethod
    def interrupted_by(cls, signum: int) -> ExitCode:
        """The code of a run stopped by signal `signum` (SIGINT or SIGTERM)."""
        return cls(128 + signum)
