"""SmsClient's issue-20 parameters: a proxy (real tinyproxy), clock skew learnt from `Date`,
and the Redactor following refreshed credentials."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import anyio
import pytest
from aiohttp import web
from anyio.abc import SocketAttribute, SocketStream

from batchsms.errors import ConnectError
from batchsms.transport.client import SmsClient
from batchsms.transport.clock import ClockSkew
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.proxy import Proxy, ProxySettings
from batchsms.transport.signing import Signer
from tests.proxies import tinyproxy_running
from tests.servers import serving

pytestmark = pytest.mark.anyio

PW = "client-proxy-pw-91"
CREDS = AkSkCredentials("AKCLIENT1234", "SKCLIENT-secret-1234")


def _client(url: str, **options: object) -> SmsClient:
    return SmsClient(url, Signer(CREDS), concurrency=4, timeout=10, **options)  # type: ignore[arg-type]


def _recording_app() -> tuple[web.Application, list[dict[str, str]]]:
    """GET /v3/tasks answering 200, and the headers of every request it received."""
    received: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        received.append(dict(request.headers))
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v3/tasks", answer)
    return app, received


async def test_signing_time_follows_the_services_date() -> None:
    ahead = timedelta(minutes=20)
    dates: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        dates.append(request.headers["X-Sdk-Date"])
        served = format_datetime(datetime.now(UTC) + ahead, usegmt=True)
        return web.json_response({}, headers={"Date": served})

    app = web.Application()
    app.router.add_get("/v3/tasks", answer)
    warned: list[float] = []
    skew = ClockSkew(warn=warned.append)
    async with serving(app) as url, _client(url, skew=skew) as client:
        for _ in range(2):
            assert (await client.request("GET", "/v3/tasks")).status == 200
    first, second = (datetime.strptime(d, "%Y%m%dT%H%M%SZ") for d in dates)
    assert timedelta(minutes=19) < second - first < timedelta(minutes=21)
    assert len(warned) == 1
    assert 19 * 60 < warned[0] < 21 * 60


async def test_requests_through_tinyproxy_and_its_refusals(tmp_path: Path) -> None:
    app, headers = _recording_app()
    with tinyproxy_running(tmp_path, "alice", PW) as address:
        async with serving(app) as url:
            proxy = ProxySettings.from_env({"HTTP_PROXY": f"http://alice:{PW}@{address}"})
            chosen = proxy.for_url(url)
            assert chosen is not None
            async with _client(url, proxy=chosen) as client:
                for _ in range(3):
                    assert (await client.request("GET", "/v3/tasks")).status == 200
            async with _client(url, proxy=Proxy(f"http://{address}")) as client:
                with pytest.raises(ConnectError, match="answered HTTP 407") as refused:
                    await client.request("GET", "/v3/tasks")
            assert not refused.value.sent
            assert address in str(refused.value)
        dead = Proxy("http://127.0.0.1:9", "alice", PW)
        async with _client("http://127.0.0.1:1", proxy=dead) as client:
            with pytest.raises(ConnectError, match="could not be reached") as unreachable:
                await client.request("GET", "/v3/tasks")
    assert len(headers) == 3
    assert all("tinyproxy" in seen.get("Via", "") for seen in headers)
    assert PW not in str(unreachable.value)
    assert "alice:***@127.0.0.1:9" in str(unreachable.value)


class Rotating:
    """An authenticator whose secrets change, as refreshed temporary credentials do."""

    def __init__(self) -> None:
        self.token = "SECURITY-TOKEN-GEN-1"

    def secrets(self) -> tuple[str, ...]:
        return (self.token,)

    def headers_for(self, method: str, host: str, path: str, query: Sequence[tuple[str, str]],
                    headers: Mapping[str, str], body: bytes, now: datetime) -> dict[str, str]:
        return {**headers, "X-Security-Token": self.token}


async def test_the_redactor_follows_refreshed_credentials() -> None:
    async def echo(request: web.Request) -> web.Response:
        token = request.headers["X-Security-Token"]
        return web.json_response({"error_code": "SMS.0001", "error_msg": f"bad {token}"},
                                 status=400, headers={"X-Request-Id": token})

    app = web.Application()
    app.router.add_get("/v3/tasks", echo)
    auth = Rotating()
    async with serving(app) as url, SmsClient(url, auth, concurrency=1, timeout=10,
                                              refreshing=True) as client:
        for generation in range(1, 6):
            auth.token = f"SECURITY-TOKEN-GEN-{generation}"
            reply = await client.request("GET", "/v3/tasks")
            assert reply.error_msg == "bad [redacted]"
            assert reply.request_id == "[redacted]"


async def test_a_401_for_the_date_is_told_from_one_for_the_key() -> None:
    async def reject(request: web.Request) -> web.Response:
        served = datetime.now(UTC) + timedelta(minutes=int(request.query["ahead"]))
        return web.json_response({"error_code": "APIG.0301", "error_msg": "x"}, status=401,
                                 headers={"Date": format_datetime(served, usegmt=True)})

    app = web.Application()
    app.router.add_get("/v3/tasks", reject)
    async with serving(app) as url, _client(url) as client:
        skewed = await client.request("GET", "/v3/tasks", query=[("ahead", "20")])
        assert skewed.status == 401
        assert skewed.date_rejected
        on_time = await client.request("GET", "/v3/tasks", query=[("ahead", "0")])
        assert not on_time.date_rejected


async def test_https_through_tinyproxy_tunnels_with_a_password(tmp_path: Path) -> None:
    """The real endpoints are https: CONNECT through the proxy, credentials on the CONNECT."""
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app, headers = _recording_app()
    with tinyproxy_running(tmp_path, "alice", PW) as address:
        async with serving(app, ssl_context=server_context) as url:
            assert url.startswith("https://")
            settings = ProxySettings.from_env({"HTTPS_PROXY": f"http://alice:{PW}@{address}"})
            chosen = settings.for_url(url)
            assert chosen is not None
            async with _client(url, proxy=chosen, tls=client_context) as client:
                for _ in range(3):  # one tunnel, kept alive
                    assert (await client.request("GET", "/v3/tasks")).status == 200
            async with _client(url, proxy=Proxy(f"http://{address}"),
                               tls=client_context) as client:
                with pytest.raises(ConnectError, match="answered HTTP 407") as refused:
                    await client.request("GET", "/v3/tasks")
    assert len(headers) == 3
    assert not any("Proxy-Authorization" in seen for seen in headers)  # not for the service
    assert not refused.value.sent


@pytest.mark.parametrize("target", ["http", "https"])
async def test_a_proxy_that_closes_the_connection_is_one_clear_error(target: str) -> None:
    """A proxy that accepts, reads the request (or the CONNECT) and hangs up without a word:
    one error that names the proxy, not its password."""

    async def hang_up(stream: SocketStream) -> None:
        async with stream:
            await stream.receive()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hang_up)
        proxy = Proxy(f"http://127.0.0.1:{port}", "alice", PW)
        async with _client(f"{target}://127.0.0.1:1", proxy=proxy) as client:
            with pytest.raises(ConnectError, match="closed the connection") as closed:
                await client.request("GET", "/v3/tasks")
        tg.cancel_scope.cancel()
    assert f"the proxy http://alice:***@127.0.0.1:{port}" in str(closed.value)
    assert PW not in str(closed.value)
