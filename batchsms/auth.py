"""Who we are to the API: credential lookup, X-Auth-Token, and SDK-HMAC-SHA256 signing.

Place in the flow: ``client.py`` asks an :class:`Authenticator` for the headers of every attempt
(each retry gets a fresh ``X-Sdk-Date`` and signature); the simulator calls
:func:`verify_signature` on every request it receives, from our client and from the official SDK.

Credentials are looked for in the order of CONTRACT §6 by :func:`load_credentials`:

1. ``--token-file PATH`` (its content, stripped), else ``BATCHSMS_AUTH_TOKEN``;
2. ``HUAWEICLOUD_SDK_AK`` + ``HUAWEICLOUD_SDK_SK``, else ``CLOUD_SDK_AK`` + ``CLOUD_SDK_SK``,
   with optional ``HUAWEICLOUD_SDK_PROJECT_ID`` / ``_DOMAIN_ID`` / ``_SECURITY_TOKEN``;
3. the SDK credentials file (``HUAWEICLOUD_SDK_CREDENTIALS_FILE`` or
   ``~/.huaweicloud/credentials``), section ``[basic]`` then ``[global]``, read the way
   ``huaweicloudsdkcore.auth.provider.ProfileCredentialProvider`` reads it.

Signing follows ``huaweicloudsdkcore.signer.signer.Signer`` byte for byte: the canonical request is
``METHOD \\n URI/ \\n sorted query \\n headers \\n signed names \\n sha256(body)``, where the URI is
the *decoded* path re-quoted segment by segment (so ``%2F`` in a task id signs as ``/``), every
header whose name has no ``_`` is signed, and ``Host`` is always among them. The SDK puts ``Host``
in the headers it sends; so do we, so the signed value is exactly the one on the wire whatever
aiohttp would have derived from the URL.

Secrets (SK, token, security token) and the AK never appear in a ``repr``, an error message, or a
verification reason; errors from parsing secret-bearing files are raised ``from None`` so their
text cannot leak through a traceback's chained exception either.
"""

from __future__ import annotations

import configparser
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from batchsms.errors import CredentialsError, NoCredentialsError

__all__ = [
    "ALGORITHM",
    "AkSkCredentials",
    "Authenticator",
    "Credentials",
    "Signer",
    "TokenAuthenticator",
    "TokenCredentials",
    "authenticator",
    "load_credentials",
    "sign_headers",
    "verify_signature",
]

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

TOKEN_ENV = "BATCHSMS_AUTH_TOKEN"  # noqa: S105 - a variable's name, not a secret
AKSK_ENVS = (("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"), ("CLOUD_SDK_AK", "CLOUD_SDK_SK"))
PROJECT_ID_ENV = "HUAWEICLOUD_SDK_PROJECT_ID"
DOMAIN_ID_ENV = "HUAWEICLOUD_SDK_DOMAIN_ID"
SECURITY_TOKEN_ENV = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 - a name, not a secret
CREDENTIALS_FILE_ENV = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
# Section name -> the optional id it carries, as the SDK's Basic/GlobalCredentials do.
FILE_SECTIONS = (("basic", "project_id"), ("global", "domain_id"))

_CONTENT_SHA256 = "X-Sdk-Content-Sha256"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True, repr=False)
class TokenCredentials:
    """An IAM token, sent as ``X-Auth-Token``; the token's own scope names the project."""

    token: str

    def __repr__(self) -> str:
        return "TokenCredentials(token='***')"

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}


@dataclass(frozen=True, slots=True, repr=False)
class AkSkCredentials:
    """An access key pair for SDK-HMAC-SHA256, with the optional ids the SDK sends alongside."""

    ak: str
    sk: str
    project_id: str | None = None
    domain_id: str | None = None
    security_token: str | None = None

    def __repr__(self) -> str:
        token = None if self.security_token is None else "***"
        return (
            f"AkSkCredentials(ak='***', sk='***', project_id={self.project_id!r}, "
            f"domain_id={self.domain_id!r}, security_token={token!r})"
        )


Credentials = TokenCredentials | AkSkCredentials


def _env(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, with empty or blank treated as unset (as the SDK's ``if ak and sk``)."""
    value = env.get(name, "").strip()
    return value or None


def load_credentials(
    env: Mapping[str, str], token_file: Path | None = None, home: Path | None = None
) -> Credentials:
    """Find credentials in the order of CONTRACT §6; raise CredentialsError if there are none."""
    if token_file is not None:
        return TokenCredentials(_read_token_file(token_file))
    token = _env(env, TOKEN_ENV)
    if token is not None:
        return TokenCredentials(token)

    from_env = _aksk_from_env(env)
    if from_env is not None:
        return from_env

    explicit = _env(env, CREDENTIALS_FILE_ENV)
    path = Path(explicit) if explicit else (home or Path.home()) / ".huaweicloud" / "credentials"
    if explicit and not path.is_file():
        raise CredentialsError(f"{CREDENTIALS_FILE_ENV} names {path}, which is not a readable file")
    from_file = _aksk_from_file(path) if path.is_file() else None
    if from_file is not None:
        return from_file

    env_pairs = ", ".join(f"{ak} + {sk}" for ak, sk in AKSK_ENVS)
    raise NoCredentialsError(
        f"no credentials found: looked for --token-file, {TOKEN_ENV}, {env_pairs}, and an "
        f"ak + sk in section [basic] or [global] of {path} (set {CREDENTIALS_FILE_ENV} to use "
        "another file)"
    )


def _read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CredentialsError(f"cannot read --token-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"cannot read --token-file {path}: not UTF-8 text") from None
    if not token:
        raise CredentialsError(f"--token-file {path} is empty")
    return token


def _aksk_from_env(env: Mapping[str, str]) -> AkSkCredentials | None:
    for ak_name, sk_name in AKSK_ENVS:
        ak, sk = _env(env, ak_name), _env(env, sk_name)
        if ak is None and sk is None:
            continue
        if ak is None or sk is None:
            missing = ak_name if ak is None else sk_name
            present = sk_name if ak is None else ak_name
            raise CredentialsError(f"{present} is set but {missing} is not; set both or neither")
        return AkSkCredentials(
            ak=ak,
            sk=sk,
            project_id=_env(env, PROJECT_ID_ENV),
            domain_id=_env(env, DOMAIN_ID_ENV),
            security_token=_env(env, SECURITY_TOKEN_ENV),
        )
    return None


def _aksk_from_file(path: Path) -> AkSkCredentials | None:
    # Same parser as the SDK (ConfigParser with its default interpolation, UTF-8), so one file
    # means the same credentials to both. Parser errors quote the offending line: never chain them.
    parser = configparser.ConfigParser()
    try:
        with path.open(encoding="utf-8") as fh:
            parser.read_file(fh, source=str(path))
        sections = {
            name: dict(parser.items(name)) for name, _ in FILE_SECTIONS if parser.has_section(name)
        }
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, configparser.Error) as exc:
        kind = type(exc).__name__
        raise CredentialsError(f"cannot parse credentials file {path} ({kind})") from None

    for name, id_key in FILE_SECTIONS:
        values = sections.get(name)
        if values is None:
            continue
        ak, sk = values.get("ak") or None, values.get("sk") or None
        if ak is None and sk is None:
            continue
        if ak is None or sk is None:
            missing = "ak" if ak is None else "sk"
            raise CredentialsError(f"credentials file {path}: section [{name}] has no {missing}")
        return AkSkCredentials(
            ak=ak,
            sk=sk,
            project_id=(values.get("project_id") or None) if id_key == "project_id" else None,
            domain_id=(values.get("domain_id") or None) if id_key == "domain_id" else None,
            security_token=values.get("security_token") or None,
        )
    return None


# --------------------------------------------------------------------------- canonical request


def canonical_uri(path: str) -> str:
    """The SDK's canonical URI: decode, re-quote each segment with ``safe='~'``, end with ``/``."""
    uri = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    """The SDK's canonical query string: pairs sorted on their decoded values, then quoted."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(query))


def _payload_hash(body: bytes, content_sha256: str | None) -> str:
    # The SDK's order: an empty body always hashes as empty, then the header, then the body.
    if not body:
        return EMPTY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def _canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    names: Sequence[str],
    values: Mapping[str, str],
    payload_hash: str,
) -> bytes:
    headers = "".join(f"{name}:{values[name]}\n" for name in names)
    return (
        f"{method.upper()}\n{canonical_uri(path)}\n{canonical_query(query)}\n"
        f"{headers}\n{';'.join(names)}\n{payload_hash}"
    ).encode()


def _string_to_sign(date: str, canonical_request: bytes) -> bytes:
    return f"{ALGORITHM}\n{date}\n{hashlib.sha256(canonical_request).hexdigest()}".encode()


def _as_utc(now: datetime) -> datetime:
    """A naive UTC datetime; a naive ``now`` is taken to be UTC already."""
    return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo is not None else now


# --------------------------------------------------------------------------- authenticators


class Authenticator(Protocol):
    """What client.py needs: the complete headers for one attempt."""

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

    __slots__ = ("_auth_prefix", "_extra", "_mac")

    def __init__(self, creds: AkSkCredentials) -> None:
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
            out[_CONTENT_SHA256] = _UNSIGNED_PAYLOAD
        if "x-sdk-date" in lowered:
            # The SDK parses a preset date and signs it re-formatted; a bad one raises ValueError.
            preset = out[lowered["x-sdk-date"]].strip()
            date = datetime.strptime(preset, DATE_FORMAT).strftime(DATE_FORMAT)
        else:
            date = _as_utc(now).strftime(DATE_FORMAT)
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
        content_sha256 = values.get(_CONTENT_SHA256.lower())
        canonical = _canonical_request(
            method, path, query, names, values, _payload_hash(body, content_sha256)
        )
        mac = self._mac.copy()
        mac.update(_string_to_sign(date, canonical))
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


# --------------------------------------------------------------------------- verification


def verify_signature(
    method: str,
    raw_path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    expected_ak: str,
    sk: str,
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> str | None:
    """Check a received request the way the API gateway does; None if valid, else a short reason.

    ``raw_path`` is the path as received (still percent-encoded; a ``?query`` tail is ignored),
    ``query`` the decoded pairs, ``headers`` as received (looked up case-insensitively, first value
    wins). ``Host`` and ``X-Sdk-Date`` must be among the signed headers, so that neither the target
    nor the time can be changed without breaking the signature. Reasons never quote a secret.
    """
    received: dict[str, str] = {}
    for key, value in headers.items():
        received.setdefault(key.lower(), value)

    authorization = received.get("authorization")
    if authorization is None:
        return "missing Authorization header"
    scheme, _, params = authorization.strip().partition(" ")
    if scheme != ALGORITHM:
        return f"unsupported authorization scheme (want {ALGORITHM})"
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    access, signed, signature = (fields.get(k) for k in ("Access", "SignedHeaders", "Signature"))
    if not access or not signed or not signature:
        return "malformed Authorization header"
    if not hmac.compare_digest(access.encode(), expected_ak.encode()):
        return "unknown access key"

    date = received.get("x-sdk-date")
    if date is None:
        return "missing X-Sdk-Date header"
    try:
        sent_at = datetime.strptime(date.strip(), DATE_FORMAT)
    except ValueError:
        return "malformed X-Sdk-Date header"
    if abs(_as_utc(now) - sent_at) > max_skew:
        return f"X-Sdk-Date is more than {int(max_skew.total_seconds())} s from the server's clock"

    names = signed.split(";")
    if "host" not in names or "x-sdk-date" not in names:
        return "Host and X-Sdk-Date must be signed"
    values: dict[str, str] = {}
    for name in names:
        if name not in received:
            return f"signed header {name!r} is missing"
        values[name] = received[name].strip()

    # Honour X-Sdk-Content-Sha256 only when signed: unsigned, it would let anyone swap the body.
    content_sha256 = values.get(_CONTENT_SHA256.lower())
    path = raw_path.partition("?")[0]
    canonical = _canonical_request(
        method, path, query, names, values, _payload_hash(body, content_sha256)
    )
    string_to_sign = _string_to_sign(sent_at.strftime(DATE_FORMAT), canonical)
    expected = hmac.new(sk.encode(), string_to_sign, hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest().encode(), signature.encode()):
        return "signature does not match"
    return None
