"""One HTTP exchange with SMS: a signed request in, a `Reply` out, aiohttp errors mapped once.

`SmsClient` owns the `aiohttp.ClientSession` (connector sized to the concurrency, TLS always
verified, optionally against `--ca-bundle`) and turns each call into either a `Reply` (any HTTP
status) or a `TransportError` (no response). It does not retry: that is the pipeline's job, so
that every request that leaves the process is counted and passes the token bucket. For the same
reason aiohttp's silent re-send of idempotent requests on a dropped kept-alive connection is
switched off (`tests/test_client.py` proves it).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from yarl import URL

from batchsms import __version__
from batchsms.auth import Authenticator, canonical_query
from batchsms.errors import ConnectError, RequestTimeout, TlsError, UsageError

USER_AGENT = f"batchsms/{__version__}"
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"

REGIONS: Mapping[str, str] = {  # as huaweicloudsdksms' SmsRegion lists them
    "cn-north-4": "https://sms.cn-north-4.myhuaweicloud.com",
    "ap-southeast-3": "https://sms.ap-southeast-3.myhuaweicloud.com",
    "my-kualalumpur-1": "https://sms.my-kualalumpur-1.myhuaweicloud.com",
    "ru-moscow-1": "https://sms-api.ru-moscow-1.myhuaweicloud.com",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """What one request got back: the status and what the outcome needs from it."""

    status: int
    request_id: str | None
    error_code: str | None
    error_msg: str | None
    retry_after: str | None
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def resolve_endpoint(endpoint: str | None, region: str | None,
                     env: Mapping[str, str] | None = None) -> str:
    """The base URL to send to: `--endpoint`, else `--region`, else BATCHSMS_ENDPOINT."""
    if not endpoint and not region and env is not None:
        endpoint = env.get("BATCHSMS_ENDPOINT") or None
    if endpoint and region:
        raise UsageError("give --endpoint or --region, not both")
    if region:
        try:
            return REGIONS[region]
        except KeyError:
            raise UsageError(f"unknown --region {region!r}; known: {', '.join(REGIONS)} "
                             "(or give --endpoint URL)") from None
    if not endpoint:
        raise UsageError("no endpoint: give --endpoint URL, --region ID, set "
                         "BATCHSMS_ENDPOINT, or use --simulate")
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"--endpoint {endpoint!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise UsageError(f"--endpoint {endpoint!r}: plain http is allowed only on loopback "
                         "(credentials never travel unencrypted)")
    if parts.path.strip("/") or parts.query:
        raise UsageError(f"--endpoint {endpoint!r}: give the base URL only, without a path")
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


def task_path(task_id: str) -> str:
    """The wire path for a task: the id percent-encoded as one segment, never raw."""
    return "/v3/tasks/" + quote(task_id, safe="")


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code, msg = data.get("error_code"), data.get("error_msg")
    return (code if isinstance(code, str) else None), (msg if isinstance(msg, str) else None)


class SmsClient:
    """Sends signed requests to one SMS endpoint over one pooled session."""

    def __init__(self, endpoint: str, auth: Authenticator | None, *, concurrency: int,
                 timeout: float, tls: ssl.SSLContext | bool = True) -> None:
        parts = urlsplit(endpoint)
        self._base = f"{parts.scheme}://{parts.netloc}"
        default_port = 443 if parts.scheme == "https" else 80
        self._host = parts.hostname or ""
        if parts.port not in (None, default_port):
            self._host = f"{self._host}:{parts.port}"
        self._auth = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = tls
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SmsClient:
        connector = aiohttp.TCPConnector(limit=self._concurrency, ssl=self._ssl,
                                         enable_cleanup_closed=False)
        session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                        auto_decompress=True, raise_for_status=False,
                                        skip_auto_headers=("Accept-Encoding",))
        # Every request that leaves the process must be a counted attempt that passed the
        # bucket: no silent re-send of an idempotent PUT when a kept-alive connection drops.
        # (aiohttp's own TestClient switches it off the same way.)
        session._retry_connection = False
        self._session = session
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def abort_in_flight(self) -> None:
        """Drop every connection now: each request in flight ends with a ConnectError."""
        if self._session is not None and self._session.connector is not None:
            await self._session.connector.close(abort_ssl=True)

    async def request(self, method: str, path: str, body: bytes = b"",
                      query: Sequence[tuple[str, str]] = ()) -> Reply:
        """One attempt. Returns any HTTP answer; raises ConnectError/RequestTimeout otherwise."""
        assert self._session is not None, "use SmsClient as an async context manager"
        headers = {"Host": self._host, "User-Agent": USER_AGENT}
        if body:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        if self._auth is not None:
            headers = self._auth.headers_for(method, self._host, path, query, headers, body,
                                             datetime.now(UTC))
        url = self._base + path
        if query:  # sent exactly as signed, as the SDK does
            url += "?" + canonical_query(query)
        try:
            async with self._session.request(method, URL(url, encoded=True),
                                             data=body or None, headers=headers) as resp:
                data = await resp.read()
                status = resp.status
                request_id = resp.headers.get("X-Request-Id")
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError as exc:
            raise RequestTimeout(f"no answer within {self._timeout.total:g}s") from exc
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as exc:
            raise TlsError(_describe_client_error(exc), sent=False) from exc
        except aiohttp.ClientConnectorError as exc:  # never connected: the request never left
            raise ConnectError(_describe_client_error(exc), sent=False) from exc
        except aiohttp.ClientError as exc:
            raise ConnectError(_describe_client_error(exc)) from exc
        code = msg = None
        if not 200 <= status < 300:
            code, msg = _error_fields(data)
        return Reply(status, request_id, code, msg, retry_after, data)

    async def put_task(self, task_id: str, body: bytes) -> Reply:
        return await self.request("PUT", task_path(task_id), body)


def _describe_client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}: {exc.os_error.strerror or exc.os_error}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
