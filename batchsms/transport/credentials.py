"""Who we are to the API: credential lookup from flags, environment and the SDK's file.

Credentials are looked for in the order of docs/reference.md §6 by :func:`find_credentials`
(which also says where they were found) and :func:`load_credentials`:

1. ``--token-file PATH`` (its content, stripped), else ``BATCHSMS_AUTH_TOKEN``;
2. ``HUAWEICLOUD_SDK_AK`` + ``HUAWEICLOUD_SDK_SK``, else ``CLOUD_SDK_AK`` + ``CLOUD_SDK_SK``,
   with optional ``HUAWEICLOUD_SDK_PROJECT_ID`` / ``_DOMAIN_ID`` / ``_SECURITY_TOKEN``;
3. the SDK credentials file (``HUAWEICLOUD_SDK_CREDENTIALS_FILE`` or
   ``~/.huaweicloud/credentials``), section ``[basic]`` then ``[global]``, read the way
   ``huaweicloudsdkcore.auth.provider.ProfileCredentialProvider`` reads it.

providers.py goes on with the temporary sources (CCE pod identity, ECS metadata) when none of
these is configured. signing.py turns what is found into the headers of each attempt. Secrets
(SK, token, security token) and the AK never appear in a ``repr`` or an error message; errors
from parsing secret-bearing files are raised ``from None`` so their text cannot leak through a
traceback's chained exception either.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from batchsms.errors import CredentialsError, NoCredentialsError

__all__ = [
    "CLIENT_TOKEN_ENV",
    "AkSkCredentials",
    "Credentials",
    "Found",
    "TokenCredentials",
    "find_credentials",
    "load_credentials",
]

CLIENT_TOKEN_ENV = "BATCHSMS_AUTH_TOKEN"  # noqa: S105 - a variable's name, not a secret
AKSK_ENVS = (("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK"), ("CLOUD_SDK_AK", "CLOUD_SDK_SK"))
PROJECT_ID_ENV = "HUAWEICLOUD_SDK_PROJECT_ID"
DOMAIN_ID_ENV = "HUAWEICLOUD_SDK_DOMAIN_ID"
SECURITY_TOKEN_ENV = "HUAWEICLOUD_SDK_SECURITY_TOKEN"  # noqa: S105 - a name, not a secret
CREDENTIALS_FILE_ENV = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
# Section name -> the optional id it carries, as the SDK's Basic/GlobalCredentials do.
FILE_SECTIONS = (("basic", "project_id"), ("global", "domain_id"))


@dataclass(frozen=True, slots=True, repr=False)
class TokenCredentials:
    """An IAM token, sent as ``X-Auth-Token``; the token's own scope names the project."""

    token: str

    def __repr__(self) -> str:
        return "TokenCredentials(token='***')"

    def headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token}

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be written (cut out of answers: untrusted.Redactor)."""
        return (self.token,)


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

    def secrets(self) -> tuple[str, ...]:
        """The values that must never be written (cut out of answers: untrusted.Redactor): the SK,
        the security token, and the AK (an identifier, but nothing batchsms writes needs it)."""
        values = (self.sk, self.ak, self.security_token)
        return tuple(v for v in values if v)


Credentials = TokenCredentials | AkSkCredentials


def _env(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value, with empty or blank treated as unset (as the SDK's ``if ak and sk``)."""
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True, slots=True)
class Found:
    """Credentials and where they were found (`source`: a flag, variables or a file; never a
    secret), for ``run.started`` and ``check`` to name."""

    credentials: Credentials
    source: str


def find_credentials(
    env: Mapping[str, str], token_file: Path | None = None, home: Path | None = None
) -> Found | None:
    """The first of sources 1-3 of docs/reference.md §6 that is configured, or None; raises
    CredentialsError for one that is configured but broken (half a pair, an unreadable file)."""
    if token_file is not None:
        return Found(TokenCredentials(_read_token_file(token_file)), f"--token-file {token_file}")
    token = _env(env, CLIENT_TOKEN_ENV)
    if token is not None:
        return Found(TokenCredentials(token), CLIENT_TOKEN_ENV)

    from_env = _aksk_from_env(env)
    if from_env is not None:
        return from_env

    path = credentials_file(env, home)
    if _env(env, CREDENTIALS_FILE_ENV) and not path.is_file():
        raise CredentialsError(f"{CREDENTIALS_FILE_ENV} names {path}, which is not a readable file")
    return _aksk_from_file(path) if path.is_file() else None


def credentials_file(env: Mapping[str, str], home: Path | None = None) -> Path:
    """The SDK credentials file looked at: ``HUAWEICLOUD_SDK_CREDENTIALS_FILE`` or the default."""
    explicit = _env(env, CREDENTIALS_FILE_ENV)
    return Path(explicit) if explicit else (home or Path.home()) / ".huaweicloud" / "credentials"


def places_looked(env: Mapping[str, str], home: Path | None = None) -> str:
    """Sources 1-3, for a "no credentials found" message."""
    env_pairs = ", ".join(f"{ak} + {sk}" for ak, sk in AKSK_ENVS)
    return (f"--token-file, {CLIENT_TOKEN_ENV}, {env_pairs}, and an ak + sk in section [basic] "
            f"or [global] of {credentials_file(env, home)} (set {CREDENTIALS_FILE_ENV} to use "
            "another file)")


def load_credentials(
    env: Mapping[str, str], token_file: Path | None = None, home: Path | None = None
) -> Credentials:
    """Find credentials in the order of docs/reference.md §6 (sources 1-3; providers.py adds the
    temporary ones); raise CredentialsError if there are none."""
    found = find_credentials(env, token_file, home)
    if found is None:
        raise NoCredentialsError(f"no credentials found: looked for {places_looked(env, home)}")
    return found.credentials


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


def _aksk_from_env(env: Mapping[str, str]) -> Found | None:
    for ak_name, sk_name in AKSK_ENVS:
        ak, sk = _env(env, ak_name), _env(env, sk_name)
        if ak is None and sk is None:
            continue
        if ak is None or sk is None:
            missing = ak_name if ak is None else sk_name
            present = sk_name if ak is None else ak_name
            raise CredentialsError(f"{present} is set but {missing} is not; set both or neither")
        return Found(AkSkCredentials(
            ak=ak,
            sk=sk,
            project_id=_env(env, PROJECT_ID_ENV),
            domain_id=_env(env, DOMAIN_ID_ENV),
            security_token=_env(env, SECURITY_TOKEN_ENV),
        ), f"{ak_name} + {sk_name}")
    return None


def _aksk_from_file(path: Path) -> Found | None:
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
        return Found(AkSkCredentials(
            ak=ak,
            sk=sk,
            project_id=(values.get("project_id") or None) if id_key == "project_id" else None,
            domain_id=(values.get("domain_id") or None) if id_key == "domain_id" else None,
            security_token=values.get("security_token") or None,
        ), f"credentials file {path} [{name}]")
    return None
