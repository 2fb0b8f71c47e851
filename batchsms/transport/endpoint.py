"""Where to send and as whom: the endpoint (`--endpoint`/`--region`/BATCHSMS_ENDPOINT), TLS
trust (`--ca-bundle`), and credentials, resolved once into a `Connection`.

The one set-up of a connection: `run`, `plan`, `tasks`, `check` and the library's `Client` each
say what they were asked (`ConnectionOptions`) and await `resolve_connection`, before anything
is opened, so that a missing endpoint or credential is refused (exit 2) before a file is
touched. Against a real endpoint it goes through the whole of docs/reference.md §6
(cloud.py `open_cloud_access`: the credential chain, the project id from IAM, the proxy, the
clock skew), kept in `Connection.access`. With `--simulate` the chain is skipped (no wait for a
metadata service on a laptop): credentials are optional and the endpoint is None, a simulator
being started in-process when the connection is opened (client.py `open_sms`, the stage that
may start one).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog

from batchsms.errors import UsageError
from batchsms.transport.cloud import CloudAccess, open_cloud_access
from batchsms.transport.credentials import (
    AkSkCredentials,
    Credentials,
    TokenCredentials,
    find_credentials,
)
from batchsms.transport.providers import CredentialProvider, ProviderAuthenticator, StaticProvider
from batchsms.transport.signing import Authenticator, authenticator

REGIONS: Mapping[str, str] = {  # as huaweicloudsdksms' SmsRegion lists them
    "cn-north-4": "https://sms.cn-north-4.myhuaweicloud.com",
    "ap-southeast-3": "https://sms.ap-southeast-3.myhuaweicloud.com",
    "my-kualalumpur-1": "https://sms.my-kualalumpur-1.myhuaweicloud.com",
    "ru-moscow-1": "https://sms-api.ru-moscow-1.myhuaweicloud.com",
}


def resolve_endpoint(endpoint: str | None, region: str | None,
                     env: Mapping[str, str] | None = None) -> str:
    """The base URL to send to: `--endpoint`, else `--region`, else BATCHSMS_ENDPOINT. Both
    given: the endpoint is where requests go, the region only names the project (cloud.py).

    Anything else is one `UsageError` naming where the URL came from (exit 2): not http(s),
    plain http off loopback, a path, a malformed host (`http://[::1`) or port (`:99999`).
    """
    source = "--endpoint"
    if not endpoint and not region and env is not None:
        endpoint = env.get("BATCHSMS_ENDPOINT") or None
        source = "BATCHSMS_ENDPOINT"
    if region and not endpoint:
        try:
            return REGIONS[region]
        except KeyError:
            raise UsageError(f"unknown --region {region!r}; known: {', '.join(REGIONS)} "
                             "(or give --endpoint URL)") from None
    if not endpoint:
        raise UsageError("no endpoint: give --endpoint URL, --region ID, set "
                         "BATCHSMS_ENDPOINT, or use --simulate")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - parsed on access: raises for a port that is not one
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise UsageError(f"{source} {endpoint!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"{source} {endpoint!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(f"{source} {endpoint!r}: plain http is allowed only on loopback "
                         "(credentials never travel unencrypted)")
    if parts.path.strip("/") or parts.query:
        raise UsageError(f"{source} {endpoint!r}: give the base URL only, without a path")
    return f"{parts.scheme}://{parts.netloc}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """TLS is always verified: against the system's CAs, or only those of `--ca-bundle`."""
    if ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--ca-bundle {ca_bundle!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """Where to send and as whom, as asked: by a command's options or the `Client`'s
    arguments. `credentials` given (the library's: credentials, or a provider of them) are used
    as they are; else the sources of docs/reference.md §6 are looked through, `token_file`
    first. `warn` is told the clock's offset once, when it is more than a minute."""

    endpoint: str | None = None
    region: str | None = None
    simulate: bool = False
    ca_bundle: str | None = None
    token_file: Path | None = None
    credentials: Credentials | CredentialProvider | None = None
    warn: Callable[[float], None] | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """Where to send and as whom, resolved: `endpoint` None is a simulator to start (the
    rehearsal of `--simulate`), `auth` None sends unsigned (a rehearsal without credentials).
    `access`: what the chain resolved for a real endpoint (provider, project, proxy, clock); None
    for a rehearsal. `source`: where a rehearsal's credentials came from (never a secret; a real
    endpoint's is `access.provider.source`)."""

    endpoint: str | None
    auth: Authenticator | None
    tls: ssl.SSLContext | bool = True
    access: CloudAccess | None = None
    source: str | None = None


async def resolve_connection(options: ConnectionOptions, env: Mapping[str, str]) -> Connection:
    """The endpoint, then the TLS trust, then the credentials (through the chain, with project,
    proxy and clock, for a real endpoint): each refused as a `UsageError` or `CredentialsError`
    naming what was wrong (exit 2), or an `AbortedError` when IAM rejects the credentials
    (exit 3), before anything is opened."""
    endpoint = None if options.simulate else resolve_endpoint(options.endpoint, options.region,
                                                              env)
    tls = tls_context(options.ca_bundle)
    given = options.credentials
    provider: CredentialProvider | None
    if given is None:
        provider = None
    elif isinstance(given, TokenCredentials | AkSkCredentials):
        provider = StaticProvider(given, "given to Client")
    else:
        provider = given
    if endpoint is None:  # a rehearsal: no chain, no metadata service waited for
        if provider is not None:
            return Connection(None, ProviderAuthenticator(provider), tls, source=provider.source)
        # A rehearsal needs no credentials unless the simulator asks for them.
        found = find_credentials(env, options.token_file)
        if found is None:
            return Connection(None, None, tls)
        return Connection(None, authenticator(found.credentials), tls, source=found.source)
    access = await open_cloud_access(env, endpoint, region=options.region,
                                     token_file=options.token_file, tls=tls,
                                     warn=options.warn or _skew_warning, provider=provider)
    return Connection(endpoint, access.auth, tls, access)


def _skew_warning(offset: float) -> None:
    """The one `clock.skew` warning of §6: the local clock is `offset_s` behind the service's."""
    structlog.get_logger("batchsms").warning(
        "clock.skew", offset_s=round(offset),
        message=f"the local clock is {abs(offset):.0f} s "
                f"{'ahead of' if offset < 0 else 'behind'} the service's Date; signing with "
                "the corrected time")
