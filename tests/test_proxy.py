"""Proxy settings from the environment (a table), and a real forward proxy (tinyproxy)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from batchsms.errors import UsageError
from batchsms.transport.proxy import Proxy, ProxySettings, shown_url
from tests.proxies import tinyproxy_running
from tests.servers import serving

PW = "s3cret-proxy-pw"
ENV = {"HTTPS_PROXY": f"http://alice:{PW}@proxy.corp:3128", "HTTP_PROXY": "plain.corp:8080"}


def test_https_and_http_targets_get_their_own_proxy() -> None:
    settings = ProxySettings.from_env(ENV)
    https = settings.for_url("https://sms.cn-north-4.myhuaweicloud.com/v3/tasks")
    assert https is not None
    assert https.url == "http://proxy.corp:3128"
    assert (https.user, https.password) == ("alice", PW)
    assert https.headers() == {"Proxy-Authorization": "Basic YWxpY2U6czNjcmV0LXByb3h5LXB3"}
    http = settings.for_url("http://127.0.0.1:8000/v3/tasks")
    assert http == Proxy("http://plain.corp:8080")


def test_lower_case_wins_and_empty_is_unset() -> None:
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "HTTP_PROXY": " "}
    settings = ProxySettings.from_env(env)
    assert settings.https == Proxy("http://lower:2")
    assert settings.http is None
    assert settings.for_url("http://example.com/") is None
    assert ProxySettings.from_env({}).for_url("https://example.com/") is None


@pytest.mark.parametrize(("no_proxy", "url", "direct"), [
    ("*", "https://anything.example/", True),
    ("myhuaweicloud.com", "https://sms.cn-north-4.myhuaweicloud.com/", True),
    (".myhuaweicloud.com", "https://sms.cn-north-4.myhuaweicloud.com/", True),
    ("*.myhuaweicloud.com", "https://sms.cn-north-4.myhuaweicloud.com/", True),
    ("huaweicloud.com", "https://sms.cn-north-4.myhuaweicloud.com/", False),
    ("sms.example:8443", "https://sms.example:8443/", True),
    ("sms.example:8443", "https://sms.example/", False),
    ("10.0.0.0/8", "https://10.1.2.3/", True),
    ("10.0.0.0/8", "https://11.1.2.3/", False),
    ("127.0.0.1, localhost", "https://127.0.0.1:9/", True),
    ("::1", "https://[::1]:9/", True),
    ("other.example", "https://sms.example/", False),
])
def test_no_proxy(no_proxy: str, url: str, direct: bool) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        settings = ProxySettings.from_env({**ENV, name: no_proxy})
        assert (settings.for_url(url) is None) is direct


def test_never_for_the_credential_endpoints() -> None:
    env = {**ENV, "HTTP_PROXY": f"http://alice:{PW}@proxy.corp:3128"}
    settings = ProxySettings.from_env(env, exempt=["http://pod-identity.local:8080/creds"])
    assert settings.for_url("http://169.254.169.254/openstack/latest/securitykey") is None
    assert settings.for_url("http://[fe80::1]/") is None
    assert settings.for_url("http://pod-identity.local:8080/creds") is None
    assert settings.for_url("http://elsewhere:8080/") is not None


def test_the_password_is_never_shown() -> None:
    settings = ProxySettings.from_env(ENV)
    proxy = settings.https
    assert proxy is not None
    assert proxy.shown == "http://alice:***@proxy.corp:3128"
    for text in (repr(proxy), repr(settings), proxy.shown, proxy.url):
        assert PW not in text
    assert settings.secrets() == (PW, "YWxpY2U6czNjcmV0LXByb3h5LXB3")
    assert shown_url(f"http://alice:{PW}@p:1/") == "http://alice:***@p:1/"
    assert shown_url("http://p:1/") == "http://p:1/"


def test_percent_encoded_credentials_are_decoded() -> None:
    proxy = Proxy.parse("http://a%40b:p%3Aw@proxy:3128", "HTTPS_PROXY")
    assert (proxy.user, proxy.password) == ("a@b", "p:w")


@pytest.mark.parametrize("value", [f"http://alice:{PW}@proxy:notaport", "ftp://proxy:21",
                                   "http://"])
def test_a_bad_proxy_url_is_a_usage_error_without_the_password(value: str) -> None:
    with pytest.raises(UsageError, match="HTTPS_PROXY") as caught:
        ProxySettings.from_env({"HTTPS_PROXY": value})
    assert PW not in str(caught.value)


# -- a real forward proxy ----------------------------------------------------------------------

@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[str]:
    with tinyproxy_running(tmp_path, "alice", PW) as address:
        yield address


@pytest.mark.anyio
async def test_requests_go_through_tinyproxy_with_a_password(tinyproxy: str) -> None:
    seen: list[str] = []

    async def target(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Via", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/v3/tasks", target)
    async with serving(app) as url:
        good = ProxySettings.from_env({"HTTP_PROXY": f"http://alice:{PW}@{tinyproxy}"})
        bad = ProxySettings.from_env({"HTTP_PROXY": f"http://alice:wrong-password@{tinyproxy}"})
        direct = ProxySettings.from_env({"HTTP_PROXY": f"http://alice:{PW}@{tinyproxy}",
                                         "NO_PROXY": "127.0.0.1"})
        async with aiohttp.ClientSession() as session:
            proxy = good.for_url(url)
            assert proxy is not None
            async with session.get(url + "/v3/tasks", proxy=proxy.url,
                                   headers=proxy.request_headers(url),
                                   proxy_headers=proxy.headers()) as response:
                assert response.status == 200
            refused = bad.for_url(url)
            assert refused is not None
            async with session.get(url + "/v3/tasks", proxy=refused.url,
                                   headers=refused.request_headers(url),
                                   proxy_headers=refused.headers()) as response:
                # tinyproxy 1.11 answers a wrong password on a plain-HTTP request 401 (with
                # WWW-Authenticate), a missing one 407: either is the proxy refusing. Through a
                # CONNECT (an https:// target) aiohttp raises ClientHttpProxyError instead.
                assert response.status in (401, 407)
                assert response.headers["Server"].startswith("tinyproxy")
            assert direct.for_url(url) is None
            async with session.get(url + "/v3/tasks") as response:
                assert response.status == 200
    assert len(seen) == 2
    assert "tinyproxy" in seen[0]
    assert seen[1] == ""
