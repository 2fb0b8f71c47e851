"""How each attempt proves who sent it: X-Auth-Token, or SDK-HMAC-SHA256 signing.

Place in the flow: ``client.py`` asks an :class:`Authenticator` for the headers of every attempt
(each retry gets a fresh ``X-Sdk-Date`` and signature); credentials.py finds the credentials;
the simulator's gateway (``simulator/gateway.py``) checks received signatures with the same
canonical request built here.

Signing follows ``huaweicloudsdkcore.signer.signer.Signer`` byte for byte: the canonical request is
``METHOD \\n URI/ \\n sorted query \\n headers \\n signed names \\n sha256(body)``, where the URI is
the *decoded* path re-quoted segment by segment (so ``%2F`` in a task id signs as ``/``), every
header whose name has no ``_`` is signed, and ``Host`` is always among them. The SDK puts ``Host``
in the headers it sends; so do we, so the signed value is exactly the one on the wire whatever
aiohttp would have derived from the URL.

Secrets (SK, token, security token) and the AK never appear in a ``repr``; each authenticator
lists them (``secrets()``) so that client.py can cut them out of whatever an answer echoes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, unquote

from batchsms.transport.credentials import AkSkCredentials, Credentials, TokenCredentials

__all__ = [
    "ALGORITHM",
    "Authenticator",
    "Signer",
    "TokenAuthenticator",
    "authenticator",
    "sign_headers",
]

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


# --------------------------------------------------------------------------- canonical request


def canonical_uri(path: str) -> str:
    """The SDK's canonical URI: decode, re-quote each segment with ``safe='~'``, end with ``/``."""
    uri = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    """The SDK's canonical query string: pairs sorted on their decoded values, then quoted."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query))


def payload_hash(body: bytes, content_sha256: str | None) -> str:
    """The last line of the canonical request."""
    # The SDK's order: an empty body always hashes as empty, then the header, then the body.
    if not body:
        return EMPTY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    names: Sequence[str],
    values: Mapping[str, str],
    body_hash: str,
) -> bytes:
    """The SDK's canonical request (module docstring), signed and verified alike."""
    headers = "".join(f"{name}:{values[name]}\n" for name in names)
    return (
        f"{method.upper()}\n{canonical_uri(path)}\n{canonical_query(query)}\n"
        f"{headers}\n{';'.join(names)}\n{body_hash}"
    ).encode()


def string_to_sign(date: str, request: bytes) -> bytes:
    """What the HMAC is taken of: the algorithm, the date and the canonical request's hash."""
    return f"{ALGORITHM}\n{date}\n{hashlib.sha256(request).hexdigest()}".encode()


def naive_utc(now: datetime) -> datetime:
    """`now` as a *naive* UTC datetime (what X-Sdk-Date is formatted from and compared with);
    a naive ``now`` is taken to be UTC already."""
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now


# --------------------------------------------------------------------------- authenticators


class Authenticator(Protocol):
    """What client.py needs: the complete headers for one attempt, and the secret values it
    sends or signs with, so that an answer echoing them has them cut out (untrusted.Redactor)."""

    def secrets(self) -> tuple[str, ...]: ...

    def headers_for(
        self,
        method: str,
        host: str,
        path: str,
        query: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        now: datetime,
    ) -> dict[str, str]: ...


class TokenAuthenticator:
    """Adds ``X-Auth-Token`` and nothing else: the token is not bound to the request."""

    __slots__ = ("_token",)

    def __init__(self, creds: TokenCredentials) -> None:
        self._token = creds.token

    def __repr__(self) -> str:
        return "TokenAuthenticator(token='***')"

    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

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
        out = dict(headers)
        out["X-Auth-Token"] = self._token
        return out


class Signer:
    """SDK-HMAC-SHA256 for one key pair; the keyed HMAC state is built once and copied per call."""

    __slots__ = ("_auth_prefix", "_extra", "_mac", "_secrets")

    def __init__(self, creds: AkSkCredentials) -> None:
        self._secrets = creds.secrets()
        self._mac = hmac.new(creds.sk.encode(), digestmod=hashlib.sha256)
        self._auth_prefix = f"{ALGORITHM} Access={creds.ak}, SignedHeaders="
        # Added before signing, as Basic/GlobalCredentials and Credentials.sign_request do.
        extra: dict[str, str] = {}
        if creds.project_id:
            extra["X-Project-Id"] = creds.project_id
        if creds.domain_id:
            extra["X-Domain-Id"] = creds.domain_id
        if creds.security_token is not None:
            extra["X-Security-Token"] = creds.security_token
        self._extra = tuple(extra.items())

    def __repr__(self) -> str:
        return "Signer(ak='***', sk='***')"

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

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
        """Every header to send: ``headers`` plus ids, ``X-Sdk-Date``, ``Host``, ``Authorization``.

        ``path`` is the percent-encoded path as it goes on the wire; ``host`` is ``host`` or
        ``host:port`` exactly as the Host header must read. An ``X-Sdk-Date`` or ``Host`` already
        in ``headers`` is kept, as the SDK keeps it. Values come back stripped, as the SDK sends
        them.
        """
        out = dict(headers)
        out.update(self._extra)
        lowered = {key.lower(): key for key in out}
        # The SDK looks for this exact spelling only.
        content_type = out.get("Content-Type", "")
        if content_type and not content_type.startswith(("application/json", "application/bson")):
            out[CONTENT_SHA256_HEADER] = _UNSIGNED_PAYLOAD
        if "x-sdk-date" in lowered:
            # The SDK parses a preset date and signs it re-formatted; a bad one raises ValueError.
            preset = out[lowered["x-sdk-date"]].strip()
            date = datetime.strptime(preset, DATE_FORMAT).strftime(DATE_FORMAT)
        else:
            date = naive_utc(now).strftime(DATE_FORMAT)
            out["X-Sdk-Date"] = date
        if "host" not in lowered:
            out["Host"] = host

        values: dict[str, str] = {}
        for key, value in out.items():
            stripped = value.strip()
            out[key] = stripped
            values[key.lower()] = stripped
        # The SDK's list keeps a name twice if two spellings of it were given; so does this.
        names = sorted(key.lower() for key in out if "_" not in key)
        content_sha256 = values.get(CONTENT_SHA256_HEADER.lower())
        canonical = canonical_request(
            method, path, query, names, values, payload_hash(body, content_sha256)
        )
        mac = self._mac.copy()
        mac.update(string_to_sign(date, canonical))
        out["Authorization"] = f"{self._auth_prefix}{';'.join(names)}, Signature={mac.hexdigest()}"
        return out


def authenticator(creds: Credentials) -> Authenticator:
    """The authenticator for these credentials; build once per run, call once per attempt."""
    if isinstance(creds, TokenCredentials):
        return TokenAuthenticator(creds)
    return Signer(creds)


def sign_headers(
    creds: AkSkCredentials,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """One-off signing; on the hot path hold a :class:`Signer` instead."""
    return Signer(creds).headers_for(method, host, path, query, headers, body, now)
