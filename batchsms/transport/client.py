"""One HTTP exchange with SMS: a signed request in, a `Reply` out, aiohttp errors mapped once.

`SmsClient` owns the `aiohttp.ClientSession` (connector sized to the concurrency, TLS always
verified, optionally against `--ca-bundle`) and turns each call into either a `Reply` (any HTTP
status) or a `TransportError` (no response, with `sent` saying whether it may have left). It
does not retry: that is the engine's job, so that every request that leaves the process is
counted and passes the token bucket. Two exceptions, both a 401 that the key did not earn
(CONTRACT §6): one whose `X-Sdk-Date` was rejected is sent once more at once, signed with the
time the answer's `Date` corrected; one on temporary credentials (`provider`) is sent once more
after a forced refresh. The engine sees the second answer only, so neither first 401 counts
toward the three-in-a-row auth abort. Credentials that expired with no new ones (their source
stopped answering) are never signed with: the request is a `CredentialsGoneError`, unsent, and the
engine stops the run as an auth abort. For the same reason it never follows a redirect (a 3xx is an
answer), and aiohttp's silent re-send of idempotent requests on a dropped kept-alive connection
is switched off (`tests/test_pipeline.py` proves it). Nothing from the answer is trusted:
bodies are read up to `untrusted.MAX_BODY`, and every string passes `untrusted.safe_text` here,
once, so every command gets the same checks. The known secret values (the credentials'
`secrets()`, and any other the caller names) are cut out here too (`untrusted.Redactor`), from
every string before it is bounded and from a body as it is parsed (`Reply.json`), so a server
that echoes the request cannot get them recorded (docs/reference.md §6); a body nobody reads (a
write's 200) is never scanned.
Where to send (endpoint, region, TLS trust) is endpoint.py's.

Size (~320 lines): one job; a third of it is the translation of aiohttp's errors, kept in one
place on purpose.
"""

from __future__ import annotations

import contextvars
import errno
import re
import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from aiohttp import http_exceptions
from aiohttp.client_reqrep import ClientRequest, ClientResponse
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from multidict import CIMultiDictProxy
from yarl import URL

from batchsms import __version__
from batchsms.errors import (
    BatchSmsError,
    ConnectError,
    CredentialsExpiredError,
    CredentialsGoneError,
    CredentialSourceError,
    RequestTimeout,
    TlsError,
    TransportError,
)
from batchsms.transport.clock import ClockSkew, is_date_rejection
from batchsms.transport.credentials import AkSkCredentials, Credentials
from batchsms.transport.proxy import Proxy
from batchsms.transport.signing import Authenticator, canonical_query
from batchsms.transport.untrusted import (
    MAX_BODY,
    MAX_CODE,
    MAX_HEADER,
    MAX_MESSAGE,
    MAX_REQUEST_ID,
    NO_SECRETS,
    Redactor,
    safe_location,
    safe_text,
)

if TYPE_CHECKING:
    from batchsms.transport.providers import CredentialProvider

USER_AGENT = f"batchsms/{__version__}"
JSON_CONTENT_TYPE = "application/json;charset=UTF-8"


class AnswerTooLarge(BatchSmsError, ValueError):  # noqa: N818 - reads as orjson's errors
    """A body the caller needs was larger than `untrusted.MAX_BODY`, so it was not read."""


class Reply(NamedTuple):
    """What one request got back: the status and what the outcome needs from it (a `NamedTuple`:
    one is made per request, and a frozen dataclass costs four times as much to make).

    Every string is already safe (`untrusted.safe_text`): valid Unicode, no control characters,
    bounded, known secrets cut out. `raw_body` is the body as it came, secrets included: read
    it only through `json`, which cuts them out first (`redactor`), and never record it. It is
    empty when the answer was larger than `MAX_BODY` (`body_cut`): for a write the status is
    the answer; a read that needs the body gets `AnswerTooLarge` from `json`.
    """

    status: int
    request_id: str | None
    error_code: str | None
    error_msg: str | None
    retry_after: str | None
    raw_body: bytes
    body_cut: bool = False
    redactor: Redactor = NO_SECRETS
    date_rejected: bool = False
    """A 401 whose ``X-Sdk-Date`` was more than 15 minutes from the answer's ``Date``
    (clock.is_date_rejection): the clock, not the key; retry once with the corrected time."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> object:
        """The body parsed; raises ValueError (`AnswerTooLarge`, orjson's) when there is none."""
        if self.body_cut:
            raise AnswerTooLarge(f"the answer (HTTP {self.status}) was larger than "
                                 f"{MAX_BODY // 2**20} MiB and was not read")
        return orjson.loads(self.redactor.body(self.raw_body))


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]+")
"""What `quote(..., safe="")` leaves as it is (RFC 3986 unreserved characters)."""


def task_path(task_id: str) -> str:
    """The wire path for a task: the id percent-encoded as one segment, never raw."""
    if _UNRESERVED.fullmatch(task_id):  # the common id: nothing to encode
        return "/v3/tasks/" + task_id
    return "/v3/tasks/" + quote(task_id, safe="")


def speed_limit_path(task_id: str) -> str:
    """UpdateSpeed's and ShowsSpeedLimits' wire path (docs/reference.md §11)."""
    return task_path(task_id) + "/speed-limit"


def _error_fields(body: bytes, redact: Redactor) -> tuple[str | None, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code, msg = data.get("error_code"), data.get("error_msg")
    return (redact.safe(code, MAX_CODE) if isinstance(code, str) else None,
            redact.safe(msg, MAX_MESSAGE) if isinstance(msg, str) else None)


def _reply(status: int, headers: CIMultiDictProxy[str], data: bytes, *, cut_off: bool,
           redact: Redactor) -> Reply:
    """The `Reply` of an answer, every string from it made safe and its secrets cut out."""
    request_id = redact.safe_or_none(headers.get("X-Request-Id"), MAX_REQUEST_ID)
    retry_after = redact.safe_or_none(headers.get("Retry-After"), MAX_HEADER)
    if status < 300:  # the common answer: no error fields to look for
        return Reply(status, request_id, None, None, retry_after, data, cut_off, redact)
    code = msg = None
    if 300 <= status < 400:
        # Never followed, and never a code from its body: it is not the service speaking.
        location = headers.get("Location")
        code = f"http_{status}"
        msg = (f"HTTP {status}: redirected to {safe_location(redact.text(location))}"
               if location else f"HTTP {status}: a redirect without a Location"
               ) + " (redirects are not followed)"
    elif status >= 400:
        if cut_off:
            msg = f"HTTP {status} (an answer larger than {MAX_BODY // 2**20} MiB, not read)"
        else:
            code, msg = _error_fields(data, redact)
    return Reply(status, request_id, code, msg, retry_after, data, cut_off, redact)


def _fits(resp: ClientResponse) -> bool:
    """A plain body whose Content-Length is within MAX_BODY (the common answer): read whole."""
    length = resp.content_length
    return length is not None and length <= MAX_BODY and "Content-Encoding" not in resp.headers


async def _read_bounded(resp: ClientResponse) -> tuple[bytes, bool]:
    """A body that does not `_fits`: the body, unless it is larger than MAX_BODY: then
    (b"", True), and the rest is never read (the connection is closed instead of drained). A
    compressed body is counted as it is decompressed: its Content-Length says nothing about what
    it inflates to."""
    if resp.content_length is None or "Content-Encoding" in resp.headers:
        chunks, size = [], 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks), False
    resp.close()
    return b"", True


# Whether the connector has handed the current request a connection: after that, a timeout
# may have come after the request left. A context variable, because the connector runs inside
# the request's own task (see `_Connector`).
_CONNECTED: contextvars.ContextVar[bool] = contextvars.ContextVar("connected", default=False)


class _Connector(aiohttp.TCPConnector):
    """A TCPConnector that notes when a request got its connection (`_CONNECTED`)."""

    async def connect(self, req: ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> Connection:  # noqa: ASYNC109
        connection = await super().connect(req, traces, timeout)
        _CONNECTED.set(True)
        return connection


class SmsClient:
    """Sends signed requests to one SMS endpoint over one pooled session."""

    def __init__(self, endpoint: str, auth: Authenticator | None, *, concurrency: int,
                 timeout: float, tls: ssl.SSLContext | bool = True,
                 secrets: Iterable[str] = (), proxy: Proxy | None = None,
                 skew: ClockSkew | None = None, refreshing: bool = False,
                 provider: CredentialProvider | None = None) -> None:
        """`secrets`: values to cut out of answers besides the credentials' own (a proxy
        password). `auth.secrets()` is read once, here, unless `refreshing`: then an
        authenticator whose credentials change during a run (providers.ProviderAuthenticator
        over refreshed temporary credentials) is asked at each request, and the `Redactor` is
        rebuilt when they changed, keeping the values of the last generations too (answers to
        requests signed with them).

        `proxy` (proxy.py; the caller decides it for this endpoint): every request goes through
        it, its password cut out of answers. `skew` (clock.py): each answer's ``Date`` teaches
        it, and requests are signed with its corrected time. `provider` (providers.py; what
        `auth` signs with): a 401 under its temporary credentials forces a refresh and the
        request is sent once more (module docstring)."""
        parts = urlsplit(endpoint)
        self._base = f"{parts.scheme}://{parts.netloc}"
        default_port = 443 if parts.scheme == "https" else 80
        self._host = parts.hostname or ""
        if ":" in self._host:  # an IPv6 literal keeps its brackets, as in the SDK's netloc
            self._host = f"[{self._host}]"
        if parts.port not in (None, default_port):
            self._host = f"{self._host}:{parts.port}"
        self._auth = auth
        self._provider = provider if provider is not None and provider.temporary else None
        self._proxy = proxy
        self._skew = skew
        self._extra_secrets = (*secrets, *(proxy.secrets() if proxy is not None else ()))
        self._signed_with: deque[tuple[str, ...]] = deque(maxlen=KEPT_GENERATIONS)
        self._refreshing = refreshing and auth is not None
        self._redact = self._redactor(auth.secrets() if auth is not None else ())
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = tls
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def _redactor(self, current: tuple[str, ...]) -> Redactor:
        """The Redactor for the credentials' secrets of now and of the generations kept."""
        self._signed_with.append(current)
        return Redactor([*(v for values in self._signed_with for v in values),
                         *self._extra_secrets])

    async def __aenter__(self) -> SmsClient:
        # Plain HTTP through a proxy: one connection per request. tinyproxy closes the client's
        # connection after each one without saying so, and this client never re-sends on a
        # dropped kept-alive connection (below), so reusing one would fail every other request.
        plain_via_proxy = self._proxy is not None and self._base.startswith("http://")
        connector = _Connector(limit=self._concurrency, ssl=self._ssl,
                                         enable_cleanup_closed=False, force_close=plain_via_proxy)
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
        """One attempt: any HTTP answer as a `Reply`, else a `TransportError` (see `_translate`);
        after a 401 not earned by the key, once more (module docstring)."""
        provider = self._provider
        try:
            signed: Credentials | None = provider.current() if provider is not None else None
            reply = await self._attempt(method, path, body, query)
            if reply.status != 401:
                return reply
            if reply.date_rejected:  # the skew learned from this answer corrects the next
                return await self._attempt(method, path, body, query)
            if provider is None or not isinstance(signed, AkSkCredentials):
                return reply
            try:
                await provider.force(signed)
            except CredentialSourceError:
                return reply  # no newer credentials: the 401 stands
            return await self._attempt(method, path, body, query)
        except CredentialsExpiredError as exc:
            raise CredentialsGoneError(str(exc), sent=False) from None

    async def _attempt(self, method: str, path: str, body: bytes,
                       query: Sequence[tuple[str, str]]) -> Reply:
        """One attempt, as `request` says.

        Redirects are never followed: a 3xx is an answer like any other, so no request leaves
        without passing the bucket, and no credential is sent anywhere but the endpoint.
        """
        assert self._session is not None, "use SmsClient as an async context manager"
        headers = {"Host": self._host, "User-Agent": USER_AGENT}
        if body:
            headers["Content-Type"] = JSON_CONTENT_TYPE
        if self._auth is not None:
            now = self._skew.now() if self._skew is not None else datetime.now(UTC)
            headers = self._auth.headers_for(method, self._host, path, query, headers, body,
                                             now)
            if self._refreshing and (current := self._auth.secrets()) != self._signed_with[-1]:
                self._redact = self._redactor(current)
        url = self._base + path
        if query:  # sent exactly as signed, as the SDK does
            url += "?" + canonical_query(query)
        proxy = self._proxy
        if proxy is not None:  # after signing: the proxy's header is not the service's
            headers.update(proxy.request_headers(url))
        _CONNECTED.set(False)
        status: int | None = None
        try:
            async with self._session.request(
                    method, URL(url, encoded=True), data=body or None, headers=headers,
                    allow_redirects=False, proxy=proxy.url if proxy is not None else None,
                    proxy_headers=proxy.headers() if proxy is not None else None) as resp:
                status = resp.status
                if status == 407 and proxy is not None:  # a plain-HTTP request's proxy
                    raise _proxy_refused(proxy, status=status)
                if self._skew is not None:
                    self._skew.learn(resp.headers.get("Date"))
                if _fits(resp):  # read here: one coroutine less on every common answer
                    reply = _reply(status, resp.headers, await resp.read(), cut_off=False,
                                   redact=self._redact)
                else:
                    data, cut_off = await _read_bounded(resp)
                    reply = _reply(status, resp.headers, data, cut_off=cut_off,
                                   redact=self._redact)
                if status == 401 and is_date_rejection(status, headers.get("X-Sdk-Date"),
                                                       resp.headers.get("Date")):
                    return reply._replace(date_rejected=True)
                return reply
        except (TimeoutError, aiohttp.ClientError) as exc:
            if proxy is not None and isinstance(exc, _PROXY_ERRORS):
                raise _proxy_refused(proxy, exc) from exc
            raise _translate(exc, method, status, connected=_CONNECTED.get(),
                             redact=self._redact,
                             via=None if proxy is None else proxy.shown) from exc

    async def put_task(self, task_id: str, body: bytes) -> Reply:
        return await self.request("PUT", task_path(task_id), body)


_WRITES = "; the update may have been applied"
KEPT_GENERATIONS = 3
"""Generations of refreshed credentials whose secrets are still cut out of answers: an answer
arrives at most --timeout after its request was signed, far less than a generation lives."""
_PROXY_ERRORS = (aiohttp.ClientHttpProxyError, aiohttp.ClientProxyConnectionError)


def _proxy_refused(proxy: Proxy, exc: aiohttp.ClientError | None = None,
                   status: int | None = None) -> ConnectError:
    """One clear line for a proxy that refused (CONTRACT §6), naming it without its password:
    a CONNECT answered with an error (`exc` a ClientHttpProxyError), a proxy not reachable
    (ClientProxyConnectionError), or a 407 to a plain-HTTP request (`status`). The request
    never reached the service."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        status = exc.status
    if status is not None:
        why = f"answered HTTP {status}" + (
            " (wrong or missing proxy user/password)" if status == 407 else "")
    else:
        os_error = getattr(exc, "os_error", None)
        why = f"could not be reached: {getattr(os_error, 'strerror', None) or type(exc).__name__}"
    return ConnectError(safe_text(f"the proxy {proxy.shown} {why}; the request was not sent"),
                        sent=False)


def _translate(exc: BaseException, method: str, status: int | None, *,
               connected: bool, redact: Redactor = NO_SECRETS,
               via: str | None = None) -> TransportError:
    """aiohttp's errors (and the total timeout) as the project's, once, with `sent` decided.

    `sent=False` only when the request certainly never left the process: the connection was
    never made (refused, no descriptor, name not resolved, TLS refused: aiohttp's
    `ClientConnectorError` family), or the timeout struck before the connector handed over a
    connection. Everything else (a reset, a disconnect, an answer that could not be parsed)
    may have reached the server, and for a write the message says so. What a certificate or a
    handshake error quotes comes from the server: its known secrets are cut out (`redact`).
    `via`: the proxy the request went through (shown without its password); a hang-up then
    names it, since which of the two hung up cannot be told from here.
    """
    may_apply = "" if method == "GET" else _WRITES
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TlsError(redact.safe(f"TLS certificate of {exc.host}:{exc.port} not trusted: "
                                    f"{exc.certificate_error}"), sent=False, unreachable=True)
    if isinstance(exc, aiohttp.ClientSSLError):
        return TlsError(redact.safe(f"TLS handshake with {exc.host}:{exc.port} failed: "
                                    f"{exc.os_error}"), sent=False, unreachable=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(_describe_connect(exc), sent=False,
                            unreachable=exc.os_error.errno not in (errno.EMFILE, errno.ENFILE))
    if isinstance(exc, TimeoutError):
        if not connected:
            return RequestTimeout("could not connect within the timeout; the request was "
                                  "not sent", sent=False)
        return RequestTimeout(f"no answer within the timeout{may_apply}")
    answer = "" if status is None else f" (HTTP {status})"
    problem = _parse_problem(exc) if isinstance(exc, aiohttp.ClientError) else None
    if problem is not None:
        return ConnectError(f"the answer{answer} {problem}{may_apply}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        who = "the server" if via is None else f"the server or the proxy {via}"
        return ConnectError(safe_text(f"{who} closed the connection without answering"
                                      f"{may_apply}"))
    if isinstance(exc, OSError) and exc.strerror:
        return ConnectError(safe_text(f"the connection failed: {exc.strerror}{may_apply}"))
    return ConnectError(safe_text(f"the connection failed ({type(exc).__name__}){may_apply}"))


def _describe_connect(exc: aiohttp.ClientConnectorError) -> str:
    error = exc.os_error
    if error.errno in (errno.EMFILE, errno.ENFILE):
        why = "no file descriptor left (raise `ulimit -n` or lower --concurrency)"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        why = "the name could not be resolved"
    elif error.errno == errno.ECONNREFUSED:
        why = "connection refused"
    else:
        why = error.strerror or type(error).__name__
    return safe_text(f"cannot connect to {exc.host}:{exc.port}: {why}; the request was not sent")


def _parse_problem(exc: aiohttp.ClientError) -> str | None:
    """What was wrong with an answer aiohttp could not parse, in words (None: not a parse error).

    aiohttp wraps the parser's error (`LineTooLong`, `BadStatusLine`, ...) in one or two
    generic ones; its own text quotes the server's bytes and, in `repr`, our request headers,
    so it is never shown: only the kind is.
    """
    if not isinstance(exc, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return None
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, http_exceptions.LineTooLong):
            return "had a header or status line larger than 8 KiB"
        if isinstance(cause, http_exceptions.BadStatusLine):
            return "did not start with an HTTP status line"
        if isinstance(cause, http_exceptions.ContentLengthError):
            return "was cut short: the connection closed before its Content-Length arrived"
        if isinstance(cause, http_exceptions.TransferEncodingError):
            return "had a malformed chunked encoding"
        if isinstance(cause, http_exceptions.ContentEncodingError):
            return "had a compressed body that could not be decoded"
        if isinstance(cause, http_exceptions.BadHttpMessage):
            text = str(cause.message).lower()
            if "chunk" in text:
                return "had a malformed chunked encoding"
            if "expected http/" in text:  # aiohttp < 3.13 says it without BadStatusLine
                return "did not start with an HTTP status line"
            return "had malformed headers"
        cause = cause.__cause__
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "had a body that could not be read"
    return "could not be parsed as HTTP"
