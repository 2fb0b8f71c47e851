"""The credential chain of docs/reference.md §6, and what signs with whatever it found.

Place in the flow: the run's set-up calls :func:`resolve_provider` once; the provider it
returns names its source (``source``: for ``run.started`` and ``check``, never a secret), gives
the credentials to sign with now (``current``), and, for temporary credentials, is kept fresh
by ``run`` in the background and refreshed at once by ``force`` after a 401.
:class:`ProviderAuthenticator` is the :class:`~batchsms.transport.signing.Authenticator` the
client calls per attempt: it signs with the provider's current credentials, adding the project
id looked up from IAM (iam.py) when they carry none.

The chain, first configured wins:

1-3. a token, AK/SK from the environment, the SDK credentials file (credentials.py's
     :func:`~batchsms.transport.credentials.find_credentials`): a :class:`StaticProvider`;
4.   CCE pod identity, when ``HC_CONTAINER_CREDENTIALS_FULL_URI`` and
     ``HC_CONTAINER_AUTHORIZATION_TOKEN_FILE`` are both set (one alone is an error): a
     :class:`~batchsms.transport.refresh.Refresher` over sources.py's
     :class:`~batchsms.transport.sources.PodIdentitySource`;
5.   the ECS metadata service: a Refresher over
     :class:`~batchsms.transport.sources.MetadataSource`. Nothing answering there means no
     credentials anywhere (:class:`~batchsms.errors.NoCredentialsError`, naming every place
     looked at); an answer that is not credentials is a
     :class:`~batchsms.errors.CredentialSourceError` naming the service and its answer.
"""

from __future__ import annotations

import dataclasses
import random as random_module
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import anyio

from batchsms.errors import CredentialsError, NoCredentialsError
from batchsms.transport.credentials import (
    AkSkCredentials,
    Credentials,
    find_credentials,
    places_looked,
)
from batchsms.transport.refresh import Refresher
from batchsms.transport.signing import Authenticator, authenticator
from batchsms.transport.sources import (
    METADATA_ENDPOINT_ENV,
    POD_TOKEN_FILE_ENV,
    POD_URI_ENV,
    MetadataSource,
    PodIdentitySource,
    SourceUnreachable,
)

__all__ = [
    "CredentialProvider",
    "ProviderAuthenticator",
    "StaticProvider",
    "resolve_provider",
]


class CredentialProvider(Protocol):
    """What the run needs from wherever credentials came from."""

    @property
    def source(self) -> str: ...

    @property
    def temporary(self) -> bool: ...

    def current(self) -> Credentials: ...

    def secrets(self) -> tuple[str, ...]: ...

    async def run(self) -> None: ...

    async def force(self, rejected: AkSkCredentials) -> Credentials: ...


class StaticProvider:
    """Credentials that do not change during a run (sources 1-3)."""

    __slots__ = ("_credentials", "_source")

    temporary = False

    def __init__(self, credentials: Credentials, source: str) -> None:
        self._credentials = credentials
        self._source = source

    def __repr__(self) -> str:
        return f"StaticProvider({self._credentials!r}, {self._source!r})"

    @property
    def source(self) -> str:
        return self._source

    def current(self) -> Credentials:
        return self._credentials

    def secrets(self) -> tuple[str, ...]:
        return self._credentials.secrets()

    async def run(self) -> None:
        """Nothing to keep fresh."""

    async def force(self, rejected: AkSkCredentials) -> Credentials:
        """Nothing newer to get: the same credentials (the 401 stands)."""
        return self._credentials


class TemporaryProvider(Refresher):
    """A Refresher is a provider of temporary credentials as it is."""

    temporary = True


async def resolve_provider(
    env: Mapping[str, str],
    token_file: Path | None = None,
    home: Path | None = None,
    *,
    metadata: bool = True,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    random: Callable[[], float] = random_module.random,
) -> CredentialProvider:
    """The first configured source of the chain (module docstring), its first credentials
    already fetched. ``metadata=False`` leaves the ECS metadata service out (a rehearsal
    against the simulator need not wait for it). Raises CredentialsError (exit 2)."""
    found = find_credentials(env, token_file, home)
    if found is not None:
        return StaticProvider(found.credentials, found.source)

    uri, pod_token = env.get(POD_URI_ENV, "").strip(), env.get(POD_TOKEN_FILE_ENV, "").strip()
    if uri or pod_token:
        if not (uri and pod_token):
            present, missing = (POD_URI_ENV, POD_TOKEN_FILE_ENV) if uri else (
                POD_TOKEN_FILE_ENV, POD_URI_ENV)
            raise CredentialsError(f"{present} is set but {missing} is not; set both or neither")
        pod = TemporaryProvider(PodIdentitySource(uri, Path(pod_token), clock),
                                clock=clock, sleep=sleep, random=random)
        await pod.start()
        return pod

    looked = f"{places_looked(env, home)}, {POD_URI_ENV} + {POD_TOKEN_FILE_ENV}"
    if not metadata:
        raise NoCredentialsError(f"no credentials found: looked for {looked}")
    ecs = TemporaryProvider(MetadataSource.from_env(env, clock),
                            clock=clock, sleep=sleep, random=random)
    try:
        await ecs.start()
    except SourceUnreachable as exc:
        raise NoCredentialsError(
            f"no credentials found: looked for {looked}, and an ECS agency: {exc} (set "
            f"{METADATA_ENDPOINT_ENV} if the metadata service is elsewhere)") from None
    return ecs


class ProviderAuthenticator:
    """Signs each attempt with the provider's credentials of the moment (one
    :class:`~batchsms.transport.signing.Signer` per generation of credentials, built when it is
    first needed), adding ``project_id`` to AK/SK credentials that carry none."""

    __slots__ = ("_built", "_for", "_project_id", "_provider")

    def __init__(self, provider: CredentialProvider, project_id: str | None = None) -> None:
        self._provider = provider
        self._project_id = project_id
        self._for: Credentials | None = None
        self._built: Authenticator | None = None

    def __repr__(self) -> str:
        return f"ProviderAuthenticator({self._provider!r}, project_id={self._project_id!r})"

    def secrets(self) -> tuple[str, ...]:
        """The secrets of the credentials of the moment: a client's Redactor must be rebuilt
        when ``credentials()`` changes (each refresh)."""
        return self._provider.secrets()

    def credentials(self) -> Credentials:
        """The credentials the next attempt is signed with (to name in ``force`` after a 401)."""
        return self._provider.current()

    def _signer(self) -> Authenticator:
        creds = self._provider.current()
        if creds is not self._for or self._built is None:
            signed = creds
            if (isinstance(creds, AkSkCredentials) and creds.project_id is None
                    and self._project_id is not None):
                signed = dataclasses.replace(creds, project_id=self._project_id)
            self._built = authenticator(signed)
            self._for = creds
        return self._built

    def headers_for(
        self,
        method: str,
        host: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> dict[str, str]:
        """Raises CredentialsExpiredError rather than sign with expired credentials."""
        return self._signer().headers_for(method, host, path, query, headers, body, now)
