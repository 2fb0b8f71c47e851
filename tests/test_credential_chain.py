"""The credential chain of §6 and its temporary sources, against real loopback servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from batchsms.errors import CredentialsError, CredentialSourceError, NoCredentialsError
from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState, metadata_app
from batchsms.transport.credentials import AkSkCredentials, TokenCredentials
from batchsms.transport.providers import ProviderAuthenticator, StaticProvider, resolve_provider
from batchsms.transport.sources import (
    MetadataSource,
    PodIdentitySource,
    SourceUnreachable,
    parse_temporary,
)
from tests.servers import serving

pytestmark = pytest.mark.anyio

NOW = 1_780_000_000.0


@pytest.fixture
async def metadata() -> AsyncIterator[tuple[MetadataState, str]]:
    state = MetadataState(lifetime=900)
    async with serving(metadata_app(state)) as url:
        yield state, url


def _pod_env(url: str, token_file: Path) -> dict[str, str]:
    return {"HC_CONTAINER_CREDENTIALS_FULL_URI": url + POD_IDENTITY_PATH,
            "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)}


# -- the chain's order -----------------------------------------------------------------------------


async def test_static_sources_come_first_and_are_named(tmp_path: Path) -> None:
    env = {"BATCHSMS_AUTH_TOKEN": "a-token-of-length", "HUAWEICLOUD_SDK_AK": "AK1234567",
           "HUAWEICLOUD_SDK_SK": "SK1234567", "BATCHSMS_METADATA_ENDPOINT": "http://127.0.0.1:9"}
    provider = await resolve_provider(env, home=tmp_path)
    assert provider.source == "BATCHSMS_AUTH_TOKEN"
    assert provider.current() == TokenCredentials("a-token-of-length")
    assert not provider.temporary
    del env["BATCHSMS_AUTH_TOKEN"]
    provider = await resolve_provider(env, home=tmp_path)
    assert provider.source == "HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK"
    cloud = {"CLOUD_SDK_AK": "AK1234567", "CLOUD_SDK_SK": "SK1234567"}
    assert (await resolve_provider(cloud, home=tmp_path)).source == "CLOUD_SDK_AK + CLOUD_SDK_SK"
    file = tmp_path / ".huaweicloud" / "credentials"
    file.parent.mkdir()
    file.write_text("[global]\nak = AK1234567\nsk = SK1234567\ndomain_id = dom\n")
    provider = await resolve_provider({}, home=tmp_path)
    assert provider.source == f"credentials file {file} [global]"
    assert provider.current() == AkSkCredentials("AK1234567", "SK1234567", domain_id="dom")


async def test_pod_identity_before_metadata(
        metadata: tuple[MetadataState, str], tmp_path: Path) -> None:
    state, url = metadata
    token_file = tmp_path / "token"
    token_file.write_text(state.pod_token + "\n")
    env = {**_pod_env(url, token_file), "BATCHSMS_METADATA_ENDPOINT": url}
    provider = await resolve_provider(env, home=tmp_path)
    assert provider.temporary
    assert provider.source == f"CCE pod identity ({url}{POD_IDENTITY_PATH})"
    creds = provider.current()
    assert isinstance(creds, AkSkCredentials)
    assert creds.ak in state.issued
    assert creds.security_token == state.issued[creds.ak].security_token
    assert state.requests == ["pod-identity"]


async def test_ecs_metadata_last_with_a_session_token(
        metadata: tuple[MetadataState, str], tmp_path: Path) -> None:
    state, url = metadata
    provider = await resolve_provider({"BATCHSMS_METADATA_ENDPOINT": url}, home=tmp_path)
    assert provider.source == f"ECS metadata ({url})"
    assert state.requests == ["token", "securitykey"]
    assert isinstance(provider.current(), AkSkCredentials)


@pytest.mark.parametrize("status", [404, 405])
async def test_metadata_without_session_token_as_the_sdk_falls_back(
        metadata: tuple[MetadataState, str], status: int) -> None:
    state, url = metadata
    state.token_status = status
    creds = await MetadataSource(url).fetch()
    assert creds.credentials.ak in state.issued
    assert state.requests == ["token", "securitykey"]


async def test_no_metadata_service_is_no_credentials_within_three_seconds(
        tmp_path: Path) -> None:
    # A port nobody listens on: refused at once. The deadline is what bounds a silent host.
    env = {"BATCHSMS_METADATA_ENDPOINT": "http://127.0.0.1:9"}
    with pytest.raises(NoCredentialsError, match="ECS agency") as caught:
        await resolve_provider(env, home=tmp_path)
    assert "HC_CONTAINER_CREDENTIALS_FULL_URI" in str(caught.value)
    with pytest.raises(NoCredentialsError, match="looked for"):
        await resolve_provider(env, home=tmp_path, metadata=False)


async def test_a_hanging_metadata_service_is_given_up_on() -> None:
    async def hang(request: web.Request) -> web.Response:
        await anyio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    async with serving(app) as url:
        started = time.monotonic()
        with pytest.raises(SourceUnreachable, match=r"did not answer within 0\.3 s"):
            await MetadataSource(url, deadline=0.3).fetch()
        assert time.monotonic() - started < 2


@pytest.mark.parametrize(("status", "body", "expect"), [
    (404, b'{"error": "no agency"}', "answered HTTP 404: .*no agency"),
    (500, b"oops", "answered HTTP 500: oops"),
    (200, b"<html>", "not JSON"),
    (200, b'{"credential": {"access": "A", "secret": "S", "securitytoken": "T"}}',
     "without expires_at"),
    (200, b'{"credential": {"access": "A", "secret": "S", "securitytoken": "T", '
          b'"expires_at": "yesterday"}}', "not an ISO 8601 time"),
    (200, b'{"credential": {"access": "A", "secret": "S", "securitytoken": "T", '
          b'"expires_at": "2001-01-01T00:00:00Z"}}', "already expired"),
    (200, b"[]", "without a 'credential' object"),
])
async def test_bad_metadata_answers_are_one_clear_error(
        status: int, body: bytes, expect: str, tmp_path: Path) -> None:
    async def key(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_put("/meta-data/latest/api/token", _token)
    app.router.add_get("/openstack/latest/securitykey", key)
    async with serving(app) as url:
        with pytest.raises(CredentialSourceError, match=expect) as caught:
            await resolve_provider({"BATCHSMS_METADATA_ENDPOINT": url}, home=tmp_path)
    assert not isinstance(caught.value, NoCredentialsError)
    assert f"ECS metadata ({url})" in str(caught.value)


async def _token(request: web.Request) -> web.Response:
    return web.Response(text="session")


async def test_pod_identity_token_file_missing_or_empty(
        metadata: tuple[MetadataState, str], tmp_path: Path) -> None:
    _, url = metadata
    with pytest.raises(CredentialSourceError, match="cannot read"):
        await resolve_provider(_pod_env(url, tmp_path / "missing"), home=tmp_path)
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(CredentialSourceError, match="is empty"):
        await resolve_provider(_pod_env(url, tmp_path / "empty"), home=tmp_path)
    only_uri = {"HC_CONTAINER_CREDENTIALS_FULL_URI": url}
    with pytest.raises(CredentialsError, match="set both or neither"):
        await resolve_provider(only_uri, home=tmp_path)


async def test_pod_identity_wrong_token_is_named_without_the_token(
        metadata: tuple[MetadataState, str], tmp_path: Path) -> None:
    _, url = metadata
    token_file = tmp_path / "token"
    token_file.write_text("a-wrong-pod-token-value")
    with pytest.raises(CredentialSourceError, match="answered HTTP 401") as caught:
        await PodIdentitySource(url + POD_IDENTITY_PATH, token_file).fetch()
    assert "a-wrong-pod-token-value" not in str(caught.value)


def test_parse_temporary_takes_the_sdk_spellings_and_hides_secrets() -> None:
    body = (b'{"credentials": {"accessKeyId": "AKTEMP123", "secretAccessKey": "SKTEMP123456", '
            b'"securityToken": "STTEMP123456", "expiration": "2026-12-04T14:33:32.414842Z"}}')
    creds = parse_temporary(body, "test", NOW)
    assert creds.credentials == AkSkCredentials("AKTEMP123", "SKTEMP123456",
                                                security_token="STTEMP123456")
    assert creds.expires_at == datetime(2026, 12, 4, 14, 33, 32, 414842, UTC).timestamp()
    for secret in ("AKTEMP123", "SKTEMP123456", "STTEMP123456"):
        assert secret not in repr(creds)


async def test_an_error_answer_echoing_credentials_is_quoted_without_them() -> None:
    leak = (b'{"credential": {"access": "AKLEAKED1", "secret": "SKLEAKED12345", '
            b'"securitytoken": "STLEAKED12345"}, "error": "half an answer"}')

    async def key(request: web.Request) -> web.Response:
        return web.Response(status=500, body=leak)

    app = web.Application()
    app.router.add_put("/meta-data/latest/api/token", _token)
    app.router.add_get("/openstack/latest/securitykey", key)
    async with serving(app) as url:
        with pytest.raises(CredentialSourceError) as caught:
            await MetadataSource(url).fetch()
    message = str(caught.value)
    assert "half an answer" in message
    for secret in ("AKLEAKED1", "SKLEAKED12345", "STLEAKED12345"):
        assert secret not in message


async def test_provider_authenticator_follows_generations_and_adds_the_project(
        metadata: tuple[MetadataState, str], tmp_path: Path) -> None:
    state, url = metadata
    provider = await resolve_provider({"BATCHSMS_METADATA_ENDPOINT": url}, home=tmp_path)
    auth = ProviderAuthenticator(provider, project_id="proj-1")
    first = auth.headers_for("GET", "h", "/v3/tasks", [], {}, b"", _now())
    assert first["X-Project-Id"] == "proj-1"
    assert first["X-Security-Token"] == state.issued[_access(first)].security_token
    rejected = auth.credentials()
    assert isinstance(rejected, AkSkCredentials)
    await provider.force(rejected)
    second = auth.headers_for("GET", "h", "/v3/tasks", [], {}, b"", _now())
    assert _access(second) != _access(first)
    assert set(auth.secrets()) >= {state.issued[_access(second)].secret}
    assert "proj-1" in repr(auth)
    assert state.issued[_access(second)].secret not in repr(auth)


async def test_static_provider_force_gives_the_same_credentials() -> None:
    creds = AkSkCredentials("AK1234567", "SK1234567")
    provider = StaticProvider(creds, "test")
    assert await provider.force(creds) is creds
    await provider.run()
    assert "SK1234567" not in repr(provider)


def _access(headers: dict[str, str]) -> str:
    return headers["Authorization"].partition("Access=")[2].partition(",")[0]


def _now() -> datetime:
    return datetime.now(UTC)
