"""Project id from IAM by region: a signed KeystoneListProjects against a verifying loopback IAM."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from batchsms.errors import AbortedError, CredentialSourceError, UsageError
from batchsms.simulator.metadata import MetadataState, metadata_app
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.iam import iam_endpoint, lookup_project_id
from batchsms.transport.providers import ProviderAuthenticator, resolve_provider
from batchsms.transport.signing import Signer
from batchsms.transport.sources import MetadataSource
from tests.servers import serving

pytestmark = pytest.mark.anyio


@pytest.fixture
async def iam() -> AsyncIterator[tuple[MetadataState, str]]:
    state = MetadataState(projects={"cn-north-4": "0123456789abcdef0123456789abcdef"})
    async with serving(metadata_app(state)) as url:
        yield state, url


def test_iam_endpoint_from_env_or_region() -> None:
    assert iam_endpoint({}, "cn-north-4") == "https://iam.cn-north-4.myhuaweicloud.com"
    env = {"HUAWEICLOUD_SDK_IAM_ENDPOINT": "http://127.0.0.1:1/"}
    assert iam_endpoint(env, "cn-north-4") == "http://127.0.0.1:1"


async def test_project_id_looked_up_with_temporary_credentials(
        iam: tuple[MetadataState, str]) -> None:
    state, url = iam
    provider = await resolve_provider({"BATCHSMS_METADATA_ENDPOINT": url})
    async with aiohttp.ClientSession() as session:
        found = await lookup_project_id(session, url, "cn-north-4", ProviderAuthenticator(provider))
    assert found == "0123456789abcdef0123456789abcdef"
    assert state.requests[-1] == "projects"


async def test_no_such_project_is_a_usage_error(iam: tuple[MetadataState, str]) -> None:
    _, url = iam
    creds = (await MetadataSource(url).fetch()).credentials
    async with aiohttp.ClientSession() as session:
        with pytest.raises(UsageError, match="no project named 'xx-nowhere-1'"):
            await lookup_project_id(session, url, "xx-nowhere-1", Signer(creds))


async def test_a_bad_signature_is_rejected_exit_3_without_the_secret(
        iam: tuple[MetadataState, str]) -> None:
    _, url = iam
    creds = (await MetadataSource(url).fetch()).credentials
    forged = AkSkCredentials(creds.ak, "a-wrong-secret-key", security_token=creds.security_token)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(AbortedError, match="signature does not match") as caught:
            await lookup_project_id(session, url, "cn-north-4", Signer(forged))
    assert "a-wrong-secret-key" not in str(caught.value)
    assert creds.security_token is not None
    assert creds.security_token not in str(caught.value)


@pytest.mark.parametrize(("status", "body", "error", "expect"), [
    (200, b'{"projects": []}', UsageError, "no project named"),
    (200, b"not json", UsageError, "no project named"),
    (200, b'{"projects": [{"name": "cn-north-4"}]}', UsageError, "no project named"),
    (500, b'{"error_msg": "echo SK-SECRET-VALUE-1"}', CredentialSourceError,
     r"HTTP 500 to the project lookup: .*\[redacted\]"),
])
async def test_bad_iam_answers(status: int, body: bytes, error: type[Exception],
                               expect: str) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_get("/v3/projects", answer)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        signer = Signer(AkSkCredentials("AKVALUE123", "SK-SECRET-VALUE-1"))
        with pytest.raises(error, match=expect) as caught:
            await lookup_project_id(session, url, "cn-north-4", signer)
    assert "SK-SECRET-VALUE-1" not in str(caught.value)


async def test_an_unreachable_iam_is_named() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CredentialSourceError, match=r"IAM \(http://127.0.0.1:9\) could not"):
            await lookup_project_id(session, "http://127.0.0.1:9", "cn-north-4",
                                    Signer(AkSkCredentials("AKVALUE123", "SKVALUE123")))
