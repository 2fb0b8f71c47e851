"""Where to send and as whom: credentials and the endpoint, as `run` and `plan` resolve them.

Shared by the commands that send through the engine, so that no command imports another.
With `--simulate`, credentials are optional and the endpoint is a simulator started in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from batchsms.credentials import load_credentials
from batchsms.errors import NoCredentialsError, UsageError
from batchsms.signing import Authenticator, authenticator


def run_credentials(env: Mapping[str, str], token_file: Path | None, *,
                    simulate: bool) -> Authenticator | None:
    """The authenticator for a run; None for a rehearsal (`--simulate`) that found none."""
    try:
        return authenticator(load_credentials(env, token_file=token_file))
    except NoCredentialsError:
        if simulate:  # a rehearsal needs none unless the simulator asks for them
            return None
        raise


@asynccontextmanager
async def endpoint_url(env: Mapping[str, str], endpoint: str | None) -> AsyncIterator[str]:
    """`endpoint`, or (None: `--simulate`) the URL of a simulator started for the run."""
    if endpoint is not None:
        yield endpoint
    else:
        from batchsms.simulator import running
        from batchsms.simulator.access import ExpectedCredentials

        try:  # a rehearsal checks credentials only when BATCHSMS_SIMULATOR_* ask it to
            expected = ExpectedCredentials.from_env(env)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        async with running(log_size=0, credentials=expected) as sim:
            yield sim.url
