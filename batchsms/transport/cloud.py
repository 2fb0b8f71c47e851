"""Everything §6 resolves before a first request, composed once: credentials, project, proxy,
clock.

Place in the flow: the commands' shared set-up (run, plan, tasks, check) calls
:func:`open_cloud_access` with the endpoint it resolved (endpoint.py) and its TLS settings, and
gets a :class:`CloudAccess`: the credential provider (providers.py; its ``run`` to be kept
running beside the pipeline when ``provider.temporary``), the authenticator to give
:class:`~batchsms.transport.client.SmsClient`, the project id (configured, or looked up in IAM
by region: iam.py), the proxy for the endpoint (proxy.py) and the :class:`ClockSkew` the client
learns from and signs with (clock.py). :meth:`CloudAccess.client_options` are SmsClient's
keyword arguments for all of it; :meth:`CloudAccess.lines` is what ``check`` prints, no secret in
it.

The project is looked up only where the SDK does: AK/SK credentials without a project id and a
region known (``region``, else ``HUAWEICLOUD_SDK_REGION``); a token carries its own scope.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import aiohttp

from batchsms.transport.clock import ClockSkew
from batchsms.transport.credentials import PROJECT_ID_ENV, AkSkCredentials
from batchsms.transport.iam import iam_endpoint, lookup_project_id
from batchsms.transport.providers import (
    CredentialProvider,
    ProviderAuthenticator,
    resolve_provider,
)
from batchsms.transport.proxy import Proxy, ProxySettings
from batchsms.transport.sources import METADATA_ENDPOINT_ENV, POD_URI_ENV

__all__ = ["REGION_ENV", "ClientOptions", "CloudAccess", "open_cloud_access"]

REGION_ENV = "HUAWEICLOUD_SDK_REGION"


class ClientOptions(TypedDict):
    """SmsClient's keyword arguments that CloudAccess decides."""

    proxy: Proxy | None
    skew: ClockSkew
    refreshing: bool
    provider: CredentialProvider


@dataclass(frozen=True, slots=True)
class CloudAccess:
    """What a run uses to reach the service, resolved (module docstring)."""

    provider: CredentialProvider
    auth: ProviderAuthenticator
    project_id: str | None
    project_source: str
    proxy: Proxy | None
    skew: ClockSkew

    def client_options(self) -> ClientOptions:
        return ClientOptions(proxy=self.proxy, skew=self.skew,
                             refreshing=self.provider.temporary, provider=self.provider)

    def lines(self) -> list[tuple[str, str]]:
        """(what, resolved as) for ``check`` and ``run.started``: never a secret."""
        project = (f"{self.project_id} ({self.project_source})" if self.project_id
                   else self.project_source)
        offset = self.skew.offset
        return [
            ("credentials", self.provider.source),
            ("project", project),
            ("proxy", self.proxy.shown if self.proxy is not None else "none (direct)"),
            ("clock", f"{offset:+.0f} s against the service" if offset else
             "within a minute of the service (or not measured yet)"),
        ]


async def open_cloud_access(
    env: Mapping[str, str],
    endpoint: str,
    *,
    region: str | None = None,
    token_file: Path | None = None,
    home: Path | None = None,
    metadata: bool = True,
    tls: ssl.SSLContext | bool = True,
    warn: Callable[[float], None] | None = None,
    provider: CredentialProvider | None = None,
) -> CloudAccess:
    """Resolve credentials, project, proxy and clock for ``endpoint`` (module docstring);
    ``provider`` given (the library's ``Client(credentials=...)``) replaces the chain.
    Raises the errors of providers.py and iam.py: CredentialsError / UsageError (exit 2),
    AbortedError when IAM rejects the credentials (exit 3)."""
    skew = ClockSkew(warn=warn)
    if provider is None:
        provider = await resolve_provider(env, token_file, home, metadata=metadata,
                                          clock=skew.service_time)
    credential_endpoints = [env.get(METADATA_ENDPOINT_ENV, ""), env.get(POD_URI_ENV, "")]
    proxies = ProxySettings.from_env(env, exempt=credential_endpoints)
    project_id, project_source = await _project(env, region, provider, proxies, tls, skew)
    return CloudAccess(provider, ProviderAuthenticator(provider, project_id), project_id,
                       project_source, proxies.for_url(endpoint), skew)


async def _project(env: Mapping[str, str], region: str | None, provider: CredentialProvider,
                   proxies: ProxySettings, tls: ssl.SSLContext | bool,
                   skew: ClockSkew) -> tuple[str | None, str]:
    creds = provider.current()
    if not isinstance(creds, AkSkCredentials):
        return None, "from the token's scope"
    if creds.project_id:
        return creds.project_id, f"configured with the credentials ({provider.source})"
    region = region or env.get(REGION_ENV, "").strip() or None
    if region is None:
        return None, (f"none: no {PROJECT_ID_ENV}, and no --region or {REGION_ENV} to look "
                      "it up by")
    iam = iam_endpoint(env, region)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls)) as session:
        found = await lookup_project_id(session, iam, region, ProviderAuthenticator(provider),
                                        now=skew.now(), proxy=proxies.for_url(iam))
    return found, f"IAM {iam} for {region}"
