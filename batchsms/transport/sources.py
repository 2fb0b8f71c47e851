"""Where temporary credentials come from: CCE pod identity and the ECS metadata service.

Place in the flow: providers.py tries these last in the chain of docs/reference.md §6;
refresh.py calls a source's ``fetch`` again before the credentials it gave expire. Each source
answers ``{"credential": {"access", "secret", "securitytoken", "expires_at"}}`` (parsed by
:func:`parse_temporary`, with the SDK's alternative spellings), as
``huaweicloudsdkcore.auth.internal.PodIdentityAccessor`` / ``MetadataAccessor`` read it.

- :class:`PodIdentitySource`: ``POST`` to ``HC_CONTAINER_CREDENTIALS_FULL_URI`` with
  ``Authorization: <the content of HC_CONTAINER_AUTHORIZATION_TOKEN_FILE>`` and body ``{}``; the
  file is read again at every fetch (the kubelet rotates it).
- :class:`MetadataSource`: a session token from ``PUT {M}/meta-data/latest/api/token``
  (``X-Metadata-Token-Ttl-Seconds: 21600``), then ``GET {M}/openstack/latest/securitykey`` with
  ``X-Metadata-Token``; without the token when its call answers 404/405 (the SDK's fallback, 503
  too). ``M`` is ``BATCHSMS_METADATA_ENDPOINT``, default ``http://169.254.169.254``. The whole
  exchange has :data:`METADATA_DEADLINE` seconds, so a host without the service learns it fast.

Both open their own aiohttp session, never given a proxy and with ``trust_env`` off: credential
endpoints are never reached through a proxy. aiohttp's and the OS's errors are translated here,
once, into :class:`~batchsms.errors.CredentialSourceError` (the source answered something
unusable) or :class:`SourceUnreachable` (nothing answered); a message names the source and
what it answered (status, a bounded and cleaned excerpt with the secrets it carried cut out),
never a secret.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import aiohttp
import anyio
import orjson

from batchsms.errors import CredentialSourceError
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.untrusted import Redactor

__all__ = [
    "METADATA_DEADLINE",
    "METADATA_ENDPOINT_ENV",
    "POD_TOKEN_FILE_ENV",
    "POD_URI_ENV",
    "MetadataSource",
    "PodIdentitySource",
    "SourceUnreachable",
    "TemporaryCredentials",
    "TemporarySource",
    "parse_temporary",
]

POD_URI_ENV = "HC_CONTAINER_CREDENTIALS_FULL_URI"
POD_TOKEN_FILE_ENV = "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE"  # noqa: S105 - a variable's name
METADATA_ENDPOINT_ENV = "BATCHSMS_METADATA_ENDPOINT"
DEFAULT_METADATA_ENDPOINT = "http://169.254.169.254"
TOKEN_PATH = "/meta-data/latest/api/token"  # noqa: S105 - a path
SECURITY_KEY_PATH = "/openstack/latest/securitykey"
TOKEN_TTL_HEADER = "X-Metadata-Token-Ttl-Seconds"  # noqa: S105 - a header's name
TOKEN_HEADER = "X-Metadata-Token"  # noqa: S105 - a header's name
TOKEN_TTL = 6 * 60 * 60  # the SDK's 6 h session token
TOKEN_FALLBACK = frozenset({404, 405, 503})
"""Token-call answers after which the key is asked for without a token: the SDK's list."""

METADATA_DEADLINE = 3.0
"""Seconds for the whole metadata exchange (CONTRACT §6: a host without the service learns it
within 3 s; the SDK gives each call (3, 3))."""
POD_DEADLINE = 10.0
"""Seconds for one pod-identity call (the SDK's (5, 5) connect + read)."""
MAX_ANSWER = 64 * 1024
"""A credential answer is a few hundred bytes; anything longer is not one."""
MAX_QUOTE = 200
"""How much of an unusable answer a message quotes."""


@dataclass(frozen=True, slots=True, repr=False)
class TemporaryCredentials:
    """Credentials that expire: an AK/SK with a security token, and when they stop working
    (``expires_at``, seconds since the epoch by the source's clock)."""

    credentials: AkSkCredentials
    expires_at: float

    def __repr__(self) -> str:
        return (f"TemporaryCredentials(credentials={self.credentials!r}, "
                f"expires_at={self.expires_at})")


Clock = Callable[[], float]
"""Seconds since the epoch (``time.time``; a FakeClock in tests)."""


class SourceUnreachable(CredentialSourceError):  # noqa: N818 - reads as the condition it is
    """Nothing answered at the source's address (refused, timed out, name unknown): for the
    metadata service, the sign of a host that is not an ECS (the chain goes on)."""


class TemporarySource(Protocol):
    """What refresh.py needs from a source: its name (never a secret) and one fetch."""

    @property
    def name(self) -> str: ...

    async def fetch(self) -> TemporaryCredentials: ...


def _first(values: Mapping[str, object], *keys: str) -> str | None:
    for key in keys:
        value = values.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse_expiry(text: str) -> float:
    """``2026-12-04T14:33:32.414842Z`` (any ISO 8601 time with a zone; no zone is UTC) as
    seconds since the epoch; ValueError when it is not one."""
    stamp = datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def parse_temporary(body: bytes, source: str, now: float) -> TemporaryCredentials:
    """Temporary credentials from a source's answer; CredentialSourceError naming ``source`` and
    what was wrong (never a value) when it holds none, or ones already expired at ``now``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CredentialSourceError(f"{source} answered something that is not JSON") from None
    if isinstance(data, dict):
        inner = data.get("credential", data.get("credentials", data))
    else:
        inner = None
    if not isinstance(inner, dict):
        raise CredentialSourceError(f"{source} answered JSON without a 'credential' object")
    access = _first(inner, "access", "accessKeyId", "access_key_id")
    secret = _first(inner, "secret", "secretAccessKey", "secret_access_key")
    token = _first(inner, "securitytoken", "securityToken", "security_token")
    expiry = _first(inner, "expires_at", "expiration")
    missing = [name for name, value in (("access", access), ("secret", secret),
                                        ("securitytoken", token), ("expires_at", expiry))
               if value is None]
    if missing or access is None or secret is None or expiry is None:
        raise CredentialSourceError(f"{source} answered credentials without {', '.join(missing)}")
    try:
        expires_at = parse_expiry(expiry)
    except ValueError:
        raise CredentialSourceError(
            f"{source} answered an expires_at that is not an ISO 8601 time") from None
    if expires_at <= now:
        raise CredentialSourceError(
            f"{source} answered credentials that had already expired (expires_at {expiry})")
    return TemporaryCredentials(AkSkCredentials(ak=access, sk=secret, security_token=token),
                                expires_at)


SECRET_FIELDS = frozenset({"access", "accessKeyId", "access_key_id", "secret", "secretAccessKey",
                           "secret_access_key", "securitytoken", "securityToken",
                           "security_token"})
"""The fields of a credential answer whose values are never quoted (every spelling the SDK
reads)."""


def _excerpt(body: bytes) -> str:
    """A bounded, cleaned quote of an answer for a message: the credential fields' values cut
    out wherever they stand in it."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        inner = data.get("credential", data.get("credentials", data))
        if isinstance(inner, dict):
            secrets = [v for k, v in inner.items() if k in SECRET_FIELDS and isinstance(v, str)]
            body = Redactor(secrets).body(body)
    return Redactor().safe(body.decode("utf-8", "replace").strip(), MAX_QUOTE)


def _failed(source: str, status: int, body: bytes) -> CredentialSourceError:
    quote = _excerpt(body)
    return CredentialSourceError(
        f"{source} answered HTTP {status}" + (f": {quote}" if quote else ""))


async def _read(response: aiohttp.ClientResponse) -> bytes:
    return await response.content.read(MAX_ANSWER)


Exchange = Callable[[aiohttp.ClientSession], Awaitable[tuple[int, bytes]]]


async def _guarded(name: str, deadline: float, exchange: Exchange) -> tuple[int, bytes]:
    """Run ``exchange`` in a session of its own within ``deadline`` seconds; aiohttp's and the
    OS's errors become SourceUnreachable here, once."""
    try:
        with anyio.fail_after(deadline):
            # trust_env=False (the default, said again): never a proxy from the environment.
            async with aiohttp.ClientSession(trust_env=False) as session:
                return await exchange(session)
    except TimeoutError:
        raise SourceUnreachable(f"{name} did not answer within {deadline:g} s") from None
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise SourceUnreachable(f"{name} could not be reached ({type(exc).__name__})") from None


class PodIdentitySource:
    """CCE pod identity (module docstring)."""

    __slots__ = ("_clock", "_token_file", "_uri")

    def __init__(self, uri: str, token_file: Path, clock: Clock = time.time) -> None:
        self._uri = uri
        self._token_file = token_file
        self._clock = clock

    @property
    def name(self) -> str:
        return f"CCE pod identity ({self._uri})"

    def __repr__(self) -> str:
        return f"PodIdentitySource({self._uri!r}, {str(self._token_file)!r})"

    def _token(self) -> str:
        try:
            token = self._token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialSourceError(
                f"{self.name}: cannot read {POD_TOKEN_FILE_ENV} {self._token_file}: "
                f"{exc.strerror}") from None
        except UnicodeDecodeError:
            raise CredentialSourceError(
                f"{self.name}: {POD_TOKEN_FILE_ENV} {self._token_file} is not UTF-8 text") from None
        if not token:
            raise CredentialSourceError(
                f"{self.name}: {POD_TOKEN_FILE_ENV} {self._token_file} is empty")
        return token

    async def fetch(self) -> TemporaryCredentials:
        token = self._token()

        async def post(session: aiohttp.ClientSession) -> tuple[int, bytes]:
            async with session.post(self._uri, headers={"Authorization": token}, data=b"{}",
                                    allow_redirects=False) as response:
                return response.status, await _read(response)

        status, body = await _guarded(self.name, POD_DEADLINE, post)
        if status != 200:
            raise _failed(self.name, status, Redactor([token]).body(body))
        return parse_temporary(body, self.name, self._clock())


class MetadataSource:
    """The ECS metadata service (module docstring)."""

    __slots__ = ("_clock", "_deadline", "_endpoint")

    def __init__(self, endpoint: str = DEFAULT_METADATA_ENDPOINT, clock: Clock = time.time,
                 deadline: float = METADATA_DEADLINE) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._clock = clock
        self._deadline = deadline

    @classmethod
    def from_env(cls, env: Mapping[str, str], clock: Clock = time.time) -> MetadataSource:
        return cls(env.get(METADATA_ENDPOINT_ENV, "").strip() or DEFAULT_METADATA_ENDPOINT, clock)

    @property
    def name(self) -> str:
        return f"ECS metadata ({self._endpoint})"

    def __repr__(self) -> str:
        return f"MetadataSource({self._endpoint!r})"

    async def fetch(self) -> TemporaryCredentials:
        status, body = await _guarded(self.name, self._deadline, self._exchange)
        if status != 200:
            raise _failed(self.name, status, body)
        return parse_temporary(body, self.name, self._clock())

    async def _exchange(self, session: aiohttp.ClientSession) -> tuple[int, bytes]:
        headers: dict[str, str] = {}
        async with session.put(self._endpoint + TOKEN_PATH,
                               headers={TOKEN_TTL_HEADER: str(TOKEN_TTL)},
                               allow_redirects=False) as response:
            token_status, token = response.status, await _read(response)
        if token_status == 200:
            headers[TOKEN_HEADER] = token.decode("utf-8", "replace").strip()
        elif token_status not in TOKEN_FALLBACK:
            raise _failed(f"{self.name} (session token)", token_status, b"")
        async with session.get(self._endpoint + SECURITY_KEY_PATH, headers=headers,
                               allow_redirects=False) as response:
            status, body = response.status, await _read(response)
        # A failure's quote must not carry the session token back (an echoing service).
        return status, body if status == 200 else Redactor(headers.values()).body(body)
