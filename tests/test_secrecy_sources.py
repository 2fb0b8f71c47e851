"""No secret of a credential source, IAM or a proxy in an error, a repr or a log, even when the
servers echo every secret they receive (issue 20; the forms scanned are test_secrecy's)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from batchsms.errors import BatchSmsError
from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState, metadata_app
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.iam import lookup_project_id
from batchsms.transport.providers import ProviderAuthenticator, resolve_provider
from batchsms.transport.proxy import ProxySettings
from batchsms.transport.refresh import Refresher
from batchsms.transport.signing import Signer
from batchsms.transport.sources import MetadataSource, PodIdentitySource
from tests.servers import serving
from tests.test_secrecy import forms

pytestmark = pytest.mark.anyio

POD_TOKEN = "POD-IDENTITY-TOKEN-7f3a9c"
SESSION = "METADATA-SESSION-TOKEN-51bd2e"
SK = "ECHOED-SECRET-KEY-9d8c7b6a"
ST = "ECHOED-SECURITY-TOKEN-4e5f6a7b"
PROXY_PW = "PROXY-PASSWORD-0a1b2c"
SECRETS = (POD_TOKEN, SESSION, SK, ST, PROXY_PW)


async def _echo(request: web.Request) -> web.Response:
    """Every header received, every secret known, in a 500 (and in headers)."""
    # Secrets first: a message quotes only the start of an answer.
    boring = ("host", "user-agent", "accept", "accept-encoding", "content-length")
    seen = [v for k, v in request.headers.items() if k.lower() not in boring]
    echoed = {"error_msg": f"saw {' '.join(seen)}", "credential": {"secret": SK, "access": "x"},
              "headers": {str(k): v for k, v in request.headers.items()}}
    return web.Response(status=500, body=orjson.dumps(echoed),
                        headers={"X-Echo": request.headers.get("Authorization", "")})


async def _session_token(request: web.Request) -> web.Response:
    return web.Response(text=SESSION)


def _echoing(tmp_path: Path) -> tuple[web.Application, Path]:
    """A metadata service (and anything else) echoing every secret; the pod token's file."""
    app = web.Application()
    app.router.add_put("/meta-data/latest/api/token", _session_token)
    app.router.add_route("*", "/{tail:.*}", _echo)
    token_file = tmp_path / "token"
    token_file.write_text(POD_TOKEN)
    return app, token_file


def _leaks(texts: list[str]) -> list[str]:
    found = []
    for text in texts:
        data = text.encode()
        for secret in SECRETS:
            for form, needle in forms(secret).items():
                if needle in data:
                    found.append(f"{secret} ({form}) in {text!r}")
    return found


async def test_echoing_sources_iam_and_proxies_leak_nothing(tmp_path: Path) -> None:
    app, token_file = _echoing(tmp_path)
    texts: list[str] = []
    with capture_logs() as logs:
        async with serving(app) as url:
            for source in (MetadataSource(url), PodIdentitySource(url + POD_IDENTITY_PATH,
                                                                    token_file)):
                refresher = Refresher(source)
                with pytest.raises(BatchSmsError) as caught:
                    await refresher.start()
                texts += [str(caught.value), repr(caught.value), repr(refresher), repr(source)]
            creds = AkSkCredentials("AKECHOED123", SK, security_token=ST)
            proxies = ProxySettings.from_env(
                {"HTTP_PROXY": f"http://bob:{PROXY_PW}@127.0.0.1:9", "NO_PROXY": "127.0.0.1"})
            async with aiohttp.ClientSession() as session:
                with pytest.raises(BatchSmsError) as caught:
                    await lookup_project_id(session, url, "cn-north-4", Signer(creds),
                                            proxy=proxies.for_url(url))
            texts += [str(caught.value), repr(caught.value), repr(proxies), repr(creds)]
            texts += [repr(ProxySettings.from_env({"HTTPS_PROXY": f"http://bob:{PROXY_PW}@p:1"}))]
    texts += [repr(event) for event in logs]
    assert len(texts) > 10
    assert not _leaks(texts), _leaks(texts)


async def test_a_provider_of_temporary_credentials_shows_none_of_them() -> None:
    state = MetadataState()
    async with serving(metadata_app(state)) as url:
        provider = await resolve_provider({"BATCHSMS_METADATA_ENDPOINT": url})
    creds = provider.current()
    assert isinstance(creds, AkSkCredentials)
    assert creds.security_token is not None
    shown = [repr(provider), repr(ProviderAuthenticator(provider, "p")), repr(creds)]
    for text in shown:
        for secret in (creds.ak, creds.sk, creds.security_token):
            assert secret not in text


def test_check_shows_no_secret_of_an_echoing_source_or_a_proxy(tmp_path: Path) -> None:
    """`batchsms check` (commands/check.py): what it prints, in lines and in JSON, when the
    metadata service echoes its secrets back, and when the pod-identity token and a proxy
    password are in play."""
    import io

    from batchsms.commands.check import CheckConfig, main
    from tests.servers import in_thread

    app, token_file = _echoing(tmp_path)
    texts: list[str] = []
    with in_thread(serving(app)) as url:
        proxy = {"HTTP_PROXY": f"http://bob:{PROXY_PW}@127.0.0.1:9",
                 "BATCHSMS_METADATA_ENDPOINT": url, "HOME": str(tmp_path)}
        pod = {**proxy, "HC_CONTAINER_CREDENTIALS_FULL_URI": url + POD_IDENTITY_PATH,
               "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)}
        aksk = {**proxy, "HUAWEICLOUD_SDK_AK": "AKECHOED123", "HUAWEICLOUD_SDK_SK": SK,
                "HUAWEICLOUD_SDK_SECURITY_TOKEN": ST, "HUAWEICLOUD_SDK_PROJECT_ID": "p"}
        for env in (proxy, pod, aksk):
            for as_json in (False, True):
                out = io.StringIO()
                code = main(CheckConfig(endpoint="http://localhost:9", json=as_json,
                                        timeout=5.0), env, out)
                assert code != 0
                texts.append(out.getvalue())
    assert any("bob:***@" in text for text in texts)
    assert not _leaks(texts), _leaks(texts)
