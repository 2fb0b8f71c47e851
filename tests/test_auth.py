"""Credential lookup, SDK-identical signing, and what the simulator's gateway accepts."""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from huaweicloudsdkcore.auth.credentials import BasicCredentials, GlobalCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer as SdkSigner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict
from yarl import URL

from batchsms.errors import CredentialsError, UsageError
from batchsms.simulator.gateway import verify_signature
from batchsms.transport.credentials import AkSkCredentials, TokenCredentials, load_credentials
from batchsms.transport.signing import (
    Signer,
    TokenAuthenticator,
    authenticator,
    canonical_uri,
    sign_headers,
)
from tests.properties import examples

AK = "HPUAKEYEXAMPLE0000001"
SK = "sEcReTkEy0123456789abcdefghijklmnopqrstu"
TOKEN = "MIIToKeNsEcReT-" + "x" * 40
SEC_TOKEN = "gQpSeCuRiTyToKeN-secret"
NOW = datetime(2024, 5, 6, 7, 8, 9)
JSON = "application/json;charset=UTF-8"
SECRETS = (SK, TOKEN, SEC_TOKEN)


def _path(task_id: str) -> str:
    # How our client and the SDK's _parse_path_params both put a task id into the path.
    return "/v3/tasks/" + quote(task_id, safe="")


def _sdk_sign(
    creds: AkSkCredentials,
    method: str,
    host: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
) -> dict[str, str]:
    """The official SDK's headers, added the way Basic/GlobalCredentials.sign_request add them."""
    sdk_creds: BasicCredentials | GlobalCredentials
    if creds.domain_id is not None and creds.project_id is None:
        sdk_creds = GlobalCredentials(creds.ak, creds.sk, creds.domain_id)
    else:
        sdk_creds = BasicCredentials(creds.ak, creds.sk, creds.project_id)
        if creds.domain_id:  # no SDK class sends both; add it as a plain header, as we do
            headers = {**headers, "X-Domain-Id": creds.domain_id}
    if creds.security_token is not None:
        sdk_creds.with_security_token(creds.security_token)
    request = SdkRequest(
        method=method,
        schema="https",
        host=host,
        resource_path=path,
        query_params=list(query),
        header_params={**headers, "X-Sdk-Date": now.strftime("%Y%m%dT%H%M%SZ")},
        body=body,
    )
    signed = sdk_creds.sign_request(request)
    return dict(signed.header_params)


# --------------------------------------------------------------------------- strategies

TRICKY_IDS = [
    "a b",
    "a/b",
    "中文-任务",
    "a+b",
    "~.-_",
    "%41",
    "a?b#c",
    "x;y=z&k",
    "é/%2F/ü",
    "'\"<>",
]
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
task_ids = st.one_of(st.sampled_from(TRICKY_IDS), _text.filter(lambda s: s not in {"", ".", ".."}))
header_names = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12).filter(
    lambda n: (
        n.lower() not in {"host", "x-sdk-date", "content-type", "authorization", "user-agent"}
        and not n.lower().startswith("x-")
    )
)
header_values = st.text(string.printable.strip() + " ", max_size=30)
bodies = st.one_of(
    st.binary(max_size=200),
    _text.map(lambda s: f'{{"name": "{s}"}}'.encode()),
    st.just(b""),
    # a large body, built cheaply: hypothesis drawing 70 000 bytes one by one took most of the
    # signer tests' time
    st.builds(lambda chunk, extra: (chunk * 70_001)[:70_000 + extra],
              st.binary(min_size=1, max_size=16), st.integers(0, 1)),
)
queries = st.lists(st.tuples(_text, _text), max_size=4)
optional_id = st.one_of(st.none(), st.text(string.hexdigits, min_size=1, max_size=32))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    extra = draw(st.dictionaries(header_names, header_values, max_size=3))
    lowered = {name.lower() for name in extra}
    if len(lowered) != len(extra):  # one spelling per name, as any HTTP client sends
        extra = {}
    content_type = draw(st.sampled_from([JSON, "application/json", "text/plain", None]))
    headers = {"User-Agent": draw(header_values), **extra}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {
        "creds": AkSkCredentials(
            ak=draw(st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=24)),
            sk=draw(st.text(string.ascii_letters + string.digits, min_size=1, max_size=48)),
            project_id=draw(optional_id),
            domain_id=draw(optional_id),
            security_token=draw(st.one_of(st.none(), st.text(string.ascii_letters, max_size=40))),
        ),
        "method": draw(st.sampled_from(["PUT", "GET", "POST", "DELETE", "put"])),
        "host": draw(
            st.sampled_from(["sms.ap-southeast-1.myhuaweicloud.com", "127.0.0.1:8080", "[::1]:9"])
        ),
        "path": _path(draw(task_ids)),
        "query": draw(queries),
        "headers": headers,
        "body": draw(bodies),
        "now": draw(st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1))).replace(
            microsecond=0
        ),
    }


# --------------------------------------------------------------------------- signing vs the SDK


def _fixed(creds: AkSkCredentials, method: str = "PUT", host: str = "127.0.0.1:8080",
           task_id: str = "a b", query: list[tuple[str, str]] | None = None,
           body: bytes = b'{"name": "n"}', content_type: str | None = JSON,
           extra: dict[str, str] | None = None) -> dict[str, Any]:
    """A request of the shape `requests()` draws, written out: the cases every run checks."""
    headers = {"User-Agent": "batchsms/0.1", **(extra or {})}
    if content_type is not None:
        headers["Content-Type"] = content_type
    return {"creds": creds, "method": method, "host": host, "path": _path(task_id),
            "query": query or [], "headers": headers, "body": body, "now": NOW}


FIXED_REQUESTS = [
    _fixed(AkSkCredentials(AK, SK)),
    _fixed(AkSkCredentials(AK, SK, project_id="p1", security_token=SEC_TOKEN), method="put",
           host="[::1]:9", task_id="中文-任务", query=[("b", "2"), ("a", "x y"), ("a", "")]),
    _fixed(AkSkCredentials(AK, SK, domain_id="d1"), method="GET", body=b"",
           content_type=None, task_id="a/b", extra={"Zeta": " v ", "alpha_1": ""}),
    _fixed(AkSkCredentials(AK, SK, project_id="p", domain_id="d", security_token=""),
           method="DELETE", task_id="é/%2F/ü", body=b"\x00\xff" * 35_000,
           content_type="text/plain", query=[("~.-_", "%41"), ("k", "a+b=c&d")]),
    _fixed(AkSkCredentials("A", "s"), host="sms.ap-southeast-1.myhuaweicloud.com",
           task_id="'\"<>", content_type="application/json", body=b"{}"),
]


@pytest.mark.parametrize("req", FIXED_REQUESTS)
def test_fixed_signatures_match_official_sdk(req: dict[str, Any]) -> None:
    """Each credential shape, method spelling, host form, query and body kind, every run."""
    assert sign_headers(**req) == _sdk_sign(**req)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_signature_matches_official_sdk(req: dict[str, Any]) -> None:
    ours = sign_headers(**req)
    theirs = _sdk_sign(**req)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Sdk-Date"] == theirs["X-Sdk-Date"]
    assert ours == theirs  # same header set and wire values (all ASCII here)


@settings(max_examples=examples(100), deadline=None)
@given(requests())
def test_verify_accepts_our_signature_and_the_sdks(req: dict[str, Any]) -> None:
    creds: AkSkCredentials = req["creds"]
    args = (req["query"], req["body"], creds.ak, creds.sk, req["now"] + timedelta(minutes=14))
    ours = CIMultiDict(sign_headers(**req))
    assert verify_signature(req["method"], req["path"], args[0], ours, *args[1:]) is None
    theirs = CIMultiDict(_sdk_sign(**req))
    assert verify_signature(req["method"], req["path"], args[0], theirs, *args[1:]) is None


def test_unicode_header_value_signs_like_sdk() -> None:
    creds = AkSkCredentials(AK, SK)
    headers = {"Content-Type": JSON, "X-Note": "  naïve 任务  "}
    ours = sign_headers(creds, "PUT", "h", "/v3/tasks/t", [], headers, b"{}", NOW)
    theirs = _sdk_sign(creds, "PUT", "h", "/v3/tasks/t", [], headers, b"{}", NOW)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Note"] == "naïve 任务"  # stripped, as signed


def test_known_vector() -> None:
    """A fixed request, so a change in the canonical form shows as a diff, not just a mismatch."""
    creds = AkSkCredentials(AK, SK, project_id="p1", security_token=SEC_TOKEN)
    out = sign_headers(
        creds, "PUT", "sms.example.com", "/v3/tasks/a%20b", [("b", "2"), ("a", "x y")],
        {"Content-Type": JSON, "User-Agent": "batchsms/0.1", "x_trace": "1"}, b'{"name":"n"}', NOW,
    )  # fmt: skip
    assert out["X-Sdk-Date"] == "20240506T070809Z"
    assert out["Host"] == "sms.example.com"
    assert out["X-Project-Id"] == "p1"
    assert out["X-Security-Token"] == SEC_TOKEN
    assert "X-Domain-Id" not in out
    assert out["Authorization"].startswith(
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders="
        "content-type;host;user-agent;x-project-id;x-sdk-date;x-security-token, Signature="
    )  # x_trace has an underscore: sent, not signed
    assert out["Authorization"] == _sdk_sign(
        creds, "PUT", "sms.example.com", "/v3/tasks/a%20b", [("b", "2"), ("a", "x y")],
        {"Content-Type": JSON, "User-Agent": "batchsms/0.1", "x_trace": "1"}, b'{"name":"n"}', NOW,
    )["Authorization"]  # fmt: skip


def test_aware_now_is_converted_to_utc() -> None:
    creds = AkSkCredentials(AK, SK)
    aware = datetime(2024, 5, 6, 15, 8, 9, tzinfo=UTC).astimezone()
    naive = datetime(2024, 5, 6, 15, 8, 9)
    assert sign_headers(creds, "PUT", "h", "/", [], {}, b"", aware) == sign_headers(
        creds, "PUT", "h", "/", [], {}, b"", naive
    )


def test_preset_date_and_host_are_kept() -> None:
    out = Signer(AkSkCredentials(AK, SK)).headers_for(
        "PUT", "ignored", "/v3/tasks/t", [], {"host": "h:81", "x-sdk-date": "20240101T000000Z"},
        b"", NOW,
    )  # fmt: skip
    assert out["host"] == "h:81"
    assert "Host" not in out
    assert out["x-sdk-date"] == "20240101T000000Z"
    assert "X-Sdk-Date" not in out


def test_canonical_uri_decodes_then_requotes() -> None:
    assert canonical_uri("/v3/tasks/a%2Fb") == "/v3/tasks/a/b/"
    assert canonical_uri("/v3/tasks/a%20b~") == "/v3/tasks/a%20b~/"
    assert canonical_uri("/v3/tasks/") == "/v3/tasks/"


def test_token_authenticator_adds_only_the_token() -> None:
    auth = authenticator(TokenCredentials(TOKEN))
    assert isinstance(auth, TokenAuthenticator)
    out = auth.headers_for("PUT", "h", "/v3/tasks/t", [], {"Content-Type": JSON}, b"{}", NOW)
    assert out == {"Content-Type": JSON, "X-Auth-Token": TOKEN}
    assert TOKEN not in repr(auth)


def test_authenticator_for_aksk_is_a_reusable_signer() -> None:
    auth = authenticator(AkSkCredentials(AK, SK))
    assert isinstance(auth, Signer)
    first = auth.headers_for("PUT", "h", "/v3/tasks/t", [], {}, b"{}", NOW)
    again = auth.headers_for("PUT", "h", "/v3/tasks/t", [], {}, b"{}", NOW)
    assert first == again
    assert SK not in repr(auth)
    assert AK not in repr(auth)


# --------------------------------------------------------------------------- verify_signature


def _signed(**overrides: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "creds": AkSkCredentials(AK, SK, project_id="p", security_token=SEC_TOKEN),
        "method": "PUT",
        "host": "127.0.0.1:8080",
        "path": _path("task/1 中"),
        "query": [("q", "1")],
        "headers": {"Content-Type": JSON, "User-Agent": "batchsms"},
        "body": b'{"name": "n"}',
        "now": NOW,
    }
    req.update(overrides)
    return {**req, "signed": CIMultiDict(sign_headers(**req))}


def _verify(
    req: dict[str, Any], *, sk: str = SK, ak: str = AK, now: datetime = NOW, **over: Any
) -> str | None:
    return verify_signature(
        over.get("method", req["method"]),
        over.get("path", req["path"]),
        over.get("query", req["query"]),
        over.get("headers", req["signed"]),
        over.get("body", req["body"]),
        ak,
        sk,
        now,
    )


def _without(headers: CIMultiDict[str], name: str) -> CIMultiDict[str]:
    copy = headers.copy()
    del copy[name]
    return copy


def _with(headers: CIMultiDict[str], name: str, value: str) -> CIMultiDict[str]:
    copy = headers.copy()
    copy[name] = value
    return copy


def test_verify_accepts_valid_request_with_query_in_raw_path() -> None:
    req = _signed()
    assert _verify(req) is None
    assert _verify(req, path=req["path"] + "?q=1") is None
    assert _verify(req, now=NOW - timedelta(minutes=15)) is None


def _reject_cases() -> Iterator[tuple[str, Callable[[dict[str, Any]], str | None], str]]:
    yield "wrong sk", lambda r: _verify(r, sk=SK + "x"), "signature"
    yield "wrong ak", lambda r: _verify(r, ak="OTHER"), "access key"
    yield "tampered body", lambda r: _verify(r, body=b'{"name": "m"}'), "signature"
    yield "emptied body", lambda r: _verify(r, body=b""), "signature"
    yield "tampered path", lambda r: _verify(r, path=_path("task/2")), "signature"
    yield "tampered query", lambda r: _verify(r, query=[("q", "2")]), "signature"
    yield "tampered method", lambda r: _verify(r, method="POST"), "signature"
    yield "stale date", lambda r: _verify(r, now=NOW + timedelta(minutes=16)), "X-Sdk-Date"
    yield "future date", lambda r: _verify(r, now=NOW - timedelta(minutes=16)), "X-Sdk-Date"
    yield "tampered host", lambda r: _verify(r, headers=_with(r["signed"], "Host", "h")), "sig"
    yield (
        "missing authorization",
        lambda r: _verify(r, headers=_without(r["signed"], "Authorization")),
        "Authorization",
    )
    yield "missing date", lambda r: _verify(r, headers=_without(r["signed"], "X-Sdk-Date")), "Date"
    yield (
        "missing signed header",
        lambda r: _verify(r, headers=_without(r["signed"], "X-Security-Token")),
        "x-security-token",
    )
    yield (
        "bad date",
        lambda r: _verify(r, headers=_with(r["signed"], "X-Sdk-Date", "yesterday")),
        "X-Sdk-Date",
    )
    yield (
        "other scheme",
        lambda r: _verify(r, headers=_with(r["signed"], "Authorization", f"Bearer {TOKEN}")),
        "scheme",
    )
    yield (
        "malformed",
        lambda r: _verify(r, headers=_with(r["signed"], "Authorization", "SDK-HMAC-SHA256 x")),
        "malformed",
    )
    yield (
        "unsigned content hash",
        lambda r: _verify(
            r,
            headers=_with(r["signed"], "X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD"),
            body=b"evil",
        ),
        "signature",
    )


@pytest.mark.parametrize(("case", "check", "reason"), list(_reject_cases()))
def test_verify_rejects(
    case: str, check: Callable[[dict[str, Any]], str | None], reason: str
) -> None:
    result = check(_signed())
    assert result is not None, case
    assert reason in result
    assert not any(secret in result for secret in (*SECRETS, SK + "x"))


def test_verify_requires_host_and_date_signed() -> None:
    # A client that leaves Host out of the signature could be replayed against another endpoint.
    req = _signed()
    auth = req["signed"]["Authorization"].replace("host;", "")
    assert _verify(req, headers=_with(req["signed"], "Authorization", auth)) == (
        "Host and X-Sdk-Date must be signed"
    )


def test_verify_honours_signed_content_hash_header() -> None:
    # The SDK sends X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD (signed) for non-JSON bodies.
    req = _signed(headers={"Content-Type": "application/octet-stream"}, body=b"\x00" * 10)
    assert req["signed"]["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    assert "x-sdk-content-sha256" in req["signed"]["Authorization"]
    assert _verify(req) is None


# --------------------------------------------------------------------------- on the wire


CREDS_KEY = web.AppKey("creds", AkSkCredentials)
REASONS_KEY = web.AppKey("reasons", list[tuple[str, str | None]])
WIRE_IDS = ["plain-id", "a b", "a/b", "中文", "a+b", "~x", "%41", "a?b#c", "x;y=z&k"]


async def _capture(request: web.Request) -> web.Response:
    creds = request.app[CREDS_KEY]
    reason = verify_signature(
        request.method,
        request.raw_path,
        list(request.query.items()),
        request.headers,
        await request.read(),
        creds.ak,
        creds.sk,
        datetime.now(UTC),
    )
    request.app[REASONS_KEY].append((request.match_info["task_id"], reason))
    return web.json_response({})


async def _serve_and_send(creds: AkSkCredentials, send: Callable[[str], Any]) -> list[Any]:
    app = web.Application()
    app[CREDS_KEY] = creds
    reasons: list[tuple[str, str | None]] = []
    app[REASONS_KEY] = reasons
    app.router.add_put("/v3/tasks/{task_id}", _capture)
    async with TestServer(app, host="127.0.0.1") as server:
        await send(f"127.0.0.1:{server.port}")
    return reasons


def test_wire_our_aiohttp_requests_verify() -> None:
    creds = AkSkCredentials(AK, SK, project_id="p", security_token=SEC_TOKEN)
    signer = Signer(creds)

    async def send(host: str) -> None:
        async with aiohttp.ClientSession() as session:
            for task_id in WIRE_IDS:
                path = _path(task_id)
                body = b'{"name": "\xe4\xb8\xad"}'
                headers = signer.headers_for(
                    "PUT", host, path, [("lang", "zh cn")],
                    {"Content-Type": JSON, "User-Agent": "batchsms/test"}, body,
                    datetime.now(UTC),
                )  # fmt: skip
                url = URL(f"http://{host}{path}?lang=zh%20cn", encoded=True)
                async with session.put(url, data=body, headers=headers) as resp:
                    assert resp.status == 200

    reasons = asyncio.run(_serve_and_send(creds, send))
    assert reasons == [(task_id, None) for task_id in WIRE_IDS]


def test_wire_official_sdk_requests_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    from huaweicloudsdksms.v3 import PutTaskReq, SmsClient, UpdateTaskRequest

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    creds = AkSkCredentials(AK, SK, project_id="p0", security_token=SEC_TOKEN)

    async def send(host: str) -> None:
        # SMS v3 takes BasicCredentials; with a project id set, the SDK makes no IAM call.
        sdk_creds = BasicCredentials(AK, SK, "p0").with_security_token(SEC_TOKEN)
        client = SmsClient.new_builder().with_credentials(sdk_creds)
        client = client.with_endpoint(f"http://{host}").build()
        for task_id in WIRE_IDS:
            request = UpdateTaskRequest(task_id=task_id, body=PutTaskReq(name="中文 name"))
            await asyncio.to_thread(client.update_task, request)

    reasons = asyncio.run(_serve_and_send(creds, send))
    assert reasons == [(task_id, None) for task_id in WIRE_IDS]


def test_sdk_signer_direct_request_verifies() -> None:
    """The SDK's Signer on a bare SdkRequest (no credentials class) also verifies."""

    class _Creds:
        ak, sk = AK, SK

    request = SdkRequest(
        method="PUT", schema="http", host="h:1", resource_path=_path("a/b c"),
        query_params=[("z", "1"), ("a", "é")], header_params={"Content-Type": JSON}, body=b"{}",
    )  # fmt: skip
    signed = SdkSigner(_Creds()).sign(request)
    now = datetime.strptime(signed.header_params["X-Sdk-Date"], "%Y%m%dT%H%M%SZ")
    reason = verify_signature(
        "PUT", signed.uri, [("z", "1"), ("a", "é")], CIMultiDict(signed.header_params), b"{}",
        AK, SK, now,
    )  # fmt: skip
    assert reason is None


# --------------------------------------------------------------------------- load_credentials


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _write_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _default_file(home: Path, text: str) -> Path:
    return _write_file(home / ".huaweicloud" / "credentials", text)


def test_token_file_wins_and_is_stripped(tmp_path: Path, home: Path) -> None:
    token_file = _write_file(tmp_path / "tok", f"  {TOKEN}\n")
    env = {"BATCHSMS_AUTH_TOKEN": "other", "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}
    assert load_credentials(env, token_file, home) == TokenCredentials(TOKEN)


def test_token_env_beats_aksk(home: Path) -> None:
    env = {"BATCHSMS_AUTH_TOKEN": TOKEN, "HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK}
    assert load_credentials(env, home=home) == TokenCredentials(TOKEN)


@pytest.mark.parametrize("prefix", ["HUAWEICLOUD_SDK", "CLOUD_SDK"])
def test_aksk_from_env(prefix: str, home: Path) -> None:
    _default_file(home, "[basic]\nak = FILEAK\nsk = FILESK\n")
    env = {
        f"{prefix}_AK": AK,
        f"{prefix}_SK": SK,
        "HUAWEICLOUD_SDK_PROJECT_ID": "proj",
        "HUAWEICLOUD_SDK_DOMAIN_ID": "dom",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": SEC_TOKEN,
    }
    assert load_credentials(env, home=home) == AkSkCredentials(AK, SK, "proj", "dom", SEC_TOKEN)


def test_huaweicloud_names_beat_cloud_names(home: Path) -> None:
    env = {
        "HUAWEICLOUD_SDK_AK": AK,
        "HUAWEICLOUD_SDK_SK": SK,
        "CLOUD_SDK_AK": "X",
        "CLOUD_SDK_SK": "Y",
    }
    assert load_credentials(env, home=home) == AkSkCredentials(AK, SK)


def test_empty_values_count_as_unset(home: Path) -> None:
    env = {
        "BATCHSMS_AUTH_TOKEN": "",
        "HUAWEICLOUD_SDK_AK": " ",
        "CLOUD_SDK_AK": AK,
        "CLOUD_SDK_SK": SK,
    }
    assert load_credentials(env, home=home) == AkSkCredentials(AK, SK)


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"HUAWEICLOUD_SDK_AK": AK}, "HUAWEICLOUD_SDK_SK"),
        ({"HUAWEICLOUD_SDK_SK": SK}, "HUAWEICLOUD_SDK_AK"),
        ({"CLOUD_SDK_AK": AK}, "CLOUD_SDK_SK"),
        ({"CLOUD_SDK_SK": SK}, "CLOUD_SDK_AK"),
        ({"HUAWEICLOUD_SDK_AK": AK, "CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK}, "HUAWEICLOUD_SDK_SK"),
    ],
)
def test_partial_aksk_names_the_missing_variable(
    env: dict[str, str], missing: str, home: Path
) -> None:
    with pytest.raises(CredentialsError, match=f"but {missing} is not") as info:
        load_credentials(env, home=home)
    _assert_no_secret(info.value)


def test_file_basic_section(home: Path) -> None:
    _default_file(
        home,
        f"[basic]\nak = {AK}\nsk = {SK}\nproject_id = proj\nsecurity_token = {SEC_TOKEN}\n"
        f"[global]\nak = G\nsk = G\ndomain_id = dom\n",
    )
    assert load_credentials({}, home=home) == AkSkCredentials(AK, SK, "proj", None, SEC_TOKEN)


def test_file_global_section(home: Path) -> None:
    _default_file(home, f"[global]\nak = {AK}\nsk = {SK}\ndomain_id = dom\nproject_id = ignored\n")
    assert load_credentials({}, home=home) == AkSkCredentials(AK, SK, None, "dom")


def test_file_named_by_env_beats_home(tmp_path: Path, home: Path) -> None:
    _default_file(home, "[basic]\nak = HOMEAK\nsk = HOMESK\n")
    named = _write_file(tmp_path / "creds.ini", f"[basic]\nAK = {AK}\nSK = {SK}\n")
    env = {"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(named)}
    assert load_credentials(env, home=home) == AkSkCredentials(AK, SK)


def test_env_beats_file(home: Path) -> None:
    _default_file(home, "[basic]\nak = FILEAK\nsk = FILESK\n")
    env = {"CLOUD_SDK_AK": AK, "CLOUD_SDK_SK": SK}
    assert load_credentials(env, home=home) == AkSkCredentials(AK, SK)


def test_file_reads_like_the_sdk(tmp_path: Path) -> None:
    from huaweicloudsdkcore.auth.provider import ProfileCredentialProvider

    path = _write_file(
        tmp_path / "c.ini",
        f"[basic]\nak = {AK}\nsk = {SK}\nproject_id = proj\nsecurity_token = {SEC_TOKEN}\n",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUAWEICLOUD_SDK_CREDENTIALS_FILE", str(path))
        sdk = ProfileCredentialProvider.get_basic().get_credentials()
    ours = load_credentials({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(path)})
    assert isinstance(ours, AkSkCredentials)
    assert (ours.ak, ours.sk, ours.project_id, ours.security_token) == (
        sdk.ak, sdk.sk, sdk.project_id, sdk.security_token,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"[basic]\nak = {AK}\n", r"\[basic\] has no sk"),
        (f"[global]\nsk = {SK}\n", r"\[global\] has no ak"),
        (f"[basic]\nak = {AK}\nsk = {SK}%oops\n", "cannot parse"),
        (f"ak = {AK}\nsk = {SK}\n", "cannot parse"),
    ],
)
def test_bad_file_is_an_error_without_secrets(home: Path, text: str, match: str) -> None:
    _default_file(home, text)
    with pytest.raises(CredentialsError, match=match) as info:
        load_credentials({}, home=home)
    _assert_no_secret(info.value)
    assert info.value.__cause__ is None  # parser errors quote lines: never chained
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_file_without_usable_section_is_nothing_found(home: Path) -> None:
    _default_file(home, "[other]\nak = a\nsk = b\n[basic]\nproject_id = p\n")
    with pytest.raises(CredentialsError, match="no credentials found"):
        load_credentials({}, home=home)


def test_nothing_found_lists_where_it_looked(home: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        load_credentials({"HUAWEICLOUD_SDK_PROJECT_ID": "p"}, home=home)
    message = str(info.value)
    for where in (
        "--token-file",
        "BATCHSMS_AUTH_TOKEN",
        "HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK",
        "CLOUD_SDK_AK + CLOUD_SDK_SK",
        str(home / ".huaweicloud" / "credentials"),
        "HUAWEICLOUD_SDK_CREDENTIALS_FILE",
    ):
        assert where in message
    assert isinstance(info.value, UsageError)


def test_missing_named_credentials_file_is_an_error(tmp_path: Path, home: Path) -> None:
    with pytest.raises(CredentialsError, match="HUAWEICLOUD_SDK_CREDENTIALS_FILE names"):
        load_credentials({"HUAWEICLOUD_SDK_CREDENTIALS_FILE": str(tmp_path / "nope")}, home=home)


def test_unreadable_token_file(tmp_path: Path, home: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot read --token-file"):
        load_credentials({}, tmp_path / "missing", home)
    with pytest.raises(CredentialsError, match="cannot read --token-file"):
        load_credentials({}, tmp_path, home)  # a directory
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe" + TOKEN.encode())
    with pytest.raises(CredentialsError, match="not UTF-8") as info:
        load_credentials({}, binary, home)
    _assert_no_secret(info.value)


def test_empty_token_file(tmp_path: Path, home: Path) -> None:
    with pytest.raises(CredentialsError, match="is empty"):
        load_credentials({}, _write_file(tmp_path / "tok", " \n"), home)


def _assert_no_secret(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        assert not any(secret in text for secret in (*SECRETS, AK))


def test_repr_and_str_never_show_secrets() -> None:
    creds = [
        TokenCredentials(TOKEN),
        AkSkCredentials(AK, SK, "proj", "dom", SEC_TOKEN),
        Signer(AkSkCredentials(AK, SK, security_token=SEC_TOKEN)),
        TokenAuthenticator(TokenCredentials(TOKEN)),
    ]
    for obj in creds:
        for text in (repr(obj), str(obj), f"{obj}", f"{[obj]}"):
            assert not any(secret in text for secret in (*SECRETS, AK)), text
    assert "proj" in repr(creds[1])
    assert "security_token='***'" in repr(creds[1])
    assert "security_token=None" in repr(AkSkCredentials(AK, SK))
