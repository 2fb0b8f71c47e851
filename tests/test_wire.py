"""The client trusts nothing from the wire: each hostile answer, from a real loopback server.

Redirects are answers, never followed; hostile bytes in headers and bodies are made safe; bodies
are bounded; parse errors are said in words with `sent`; `sent=False` only when no connection was
made; an IPv6 literal endpoint gets a bracketed Host. `Outcome.to_json` never raises. Known
secrets echoed by a server are cut out of everything taken from the answer.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

import orjson
import pytest
from aiohttp import web

from batchsms.errors import ConnectError, RequestTimeout, TransportError
from batchsms.journal.outcomes import Outcome, Status
from batchsms.lines.schema import Problem
from batchsms.simulator.gateway import verify_signature
from batchsms.transport import untrusted as wire
from batchsms.transport.client import AnswerTooLarge, Reply, SmsClient, task_path
from batchsms.transport.credentials import load_credentials
from batchsms.transport.signing import authenticator
from tests.servers import Server, app_server, raw_server

TOKEN = {"BATCHSMS_AUTH_TOKEN": "wire-test-token"}
AKSK = {"HUAWEICLOUD_SDK_AK": "AKWIRETEST0000000000", "HUAWEICLOUD_SDK_SK": "wire-test-sk",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": "wire-test-sts"}
pytestmark = pytest.mark.anyio

BODY = b'{"speed_limit":10}'


def client(url: str, env: dict[str, str] | None = None, timeout: float = 5.0) -> SmsClient:
    auth = authenticator(load_credentials(env or TOKEN))
    return SmsClient(url, auth, concurrency=4, timeout=timeout)


async def put(url: str, env: dict[str, str] | None = None, timeout: float = 5.0,  # noqa: ASYNC109
              task_id: str = "t1") -> Reply:
    async with client(url, env, timeout) as c:
        return await c.put_task(task_id, BODY)


async def fails(url: str, **kwargs: float) -> TransportError:
    with pytest.raises(TransportError) as caught:
        await put(url, **kwargs)  # type: ignore[arg-type]
    return caught.value


def redirect(status: int, to: str) -> web.Response:
    return web.Response(status=status, headers={"Location": to},
                        body=b'{"error_code": "SMS.0000", "error_msg": "moved"}')


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    """Where redirects point: it must never receive anything."""
    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.json_response({"id": "t1"})

    with app_server(answer) as server:
        yield server


# -- 1. redirects --------------------------------------------------------------------------


@pytest.mark.parametrize("env", [TOKEN, AKSK], ids=["token", "aksk+sts"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_elsewhere_is_a_failure_and_sends_nothing_there(
        env: dict[str, str], status: int, elsewhere: Server) -> None:
    target = f"{elsewhere.url}/v3/tasks/t1?X-Auth-Token=leaked&sig=abc"

    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return redirect(status, target)

    with app_server(answer) as first:
        reply = await put(first.url, env)
    assert (reply.status, reply.ok, reply.error_code) == (status, False, f"http_{status}")
    assert reply.error_msg is not None
    assert f"{elsewhere.url}/v3/tasks/t1" in reply.error_msg
    assert "leaked" not in reply.error_msg
    assert "sig" not in reply.error_msg
    assert "SMS.0000" not in f"{reply.error_code} {reply.error_msg}"
    assert [r.method for r in first.received] == ["PUT"]
    assert elsewhere.received == []


async def test_a_303_to_the_same_path_does_not_become_a_get() -> None:
    async def answer(request: web.Request, _: Server) -> web.StreamResponse:
        if request.method == "GET":
            return web.json_response({"id": "t1"})
        return redirect(303, request.path)

    with app_server(answer) as server:
        reply = await put(server.url)
    assert not reply.ok
    assert reply.error_code == "http_303"
    assert [r.method for r in server.received] == ["PUT"]


async def test_a_redirect_loop_is_one_request() -> None:
    async def answer(request: web.Request, _: Server) -> web.StreamResponse:
        return redirect(302, request.path)

    with app_server(answer) as server:
        for _ in range(3):
            reply = await put(server.url)
            assert reply.error_code == "http_302"
        assert server.count("PUT") == 3


async def test_a_redirect_location_is_bounded_and_loses_its_credentials() -> None:
    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return redirect(302, "https://user:pw@evil.example/" + "p" * 5000 + "?token=x#frag")

    with app_server(answer) as server:
        reply = await put(server.url)
    assert reply.error_msg is not None
    assert "pw@" not in reply.error_msg
    assert "token" not in reply.error_msg
    assert "https://evil.example/ppp" in reply.error_msg
    assert len(reply.error_msg) < wire.MAX_LOCATION + 150


# -- 2. hostile bytes ------------------------------------------------------------------------


async def test_a_non_utf8_request_id_and_control_characters_are_made_safe() -> None:
    body = b'{"error_code": "SMS.\\u001b1", "error_msg": "gone \\u202e\\u0007!"}'
    raw = (b"HTTP/1.1 404 Not Found\r\nX-Request-Id: \xff\x1b[2J\r\nRetry-After: \xfe\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n"
           b"\r\n%s" % (len(body), body))
    with raw_server(raw) as server:
        reply = await put(server.url)
    assert reply.request_id == "\ufffd\\x1b[2J"
    assert reply.retry_after == "\ufffd"
    assert (reply.error_code, reply.error_msg) == ("SMS.\\x1b1", "gone \\u202e\\x07!")
    record = Outcome("r", 1, "t1", None, Status.FAILED, http_status=404, attempts=1,
                     error_code=reply.error_code, error_msg=reply.error_msg,
                     request_id=reply.request_id)
    assert orjson.loads(record.to_json())["request_id"] == "\ufffd\\x1b[2J"


def test_to_json_never_raises_and_says_what_it_replaced() -> None:
    bad = "\udcff"
    for status, msg in ((Status.FAILED, "boom" + bad), (Status.SUCCEEDED, None)):
        record = Outcome("run" + bad, 3, "t" + bad, "r" + bad, status, attempts=1,
                         error_msg=msg, request_id=bad,
                         errors=(Problem("body." + bad, "bad " + bad),))
        data = orjson.loads(record.to_json())
        assert (data["line"], data["status"]) == (3, status.value)
        assert data["task_id"] == "t\ufffd"
        assert data["request_id"] == "\ufffd"
        assert data["errors"] == [{"path": "body.\ufffd", "message": "bad \ufffd"}]
        if status is Status.FAILED:
            assert data["error_msg"].startswith("boom\ufffd [batchsms replaced text")
            assert "task_id" in data["error_msg"]
            assert "request_id" in data["error_msg"]
        else:
            assert data["error_msg"] is None  # null on success, whatever happened


def test_safe_text_cuts_with_a_marker_and_keeps_clean_text_as_is() -> None:
    assert wire.safe_text("SMS.1234 not found", 100) == "SMS.1234 not found"
    assert wire.safe_text("中文 ok", 100) == "中文 ok"
    assert wire.safe_text("x" * 1500) == "x" * 1000 + "… (cut, 500 more)"
    assert wire.safe_text("a\nb\tc\x7f\x85") == "a\\x0ab\\x09c\\x7f\\x85"


# -- 3. bounded answers ----------------------------------------------------------------------


async def _stream(request: web.Request, size: int, *, chunked: bool,
                  status: int = 200) -> web.StreamResponse:
    resp = web.StreamResponse(status=status)
    if chunked:
        resp.enable_chunked_encoding()
    else:
        resp.content_length = size
    await resp.prepare(request)
    block = b" " * 65536
    try:
        for _ in range(size // len(block)):
            await resp.write(block)
    except (ConnectionError, RuntimeError):  # the client hung up, as it should
        pass
    return resp


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_the_bound_is_not_read(chunked: bool) -> None:
    size = wire.MAX_BODY + 4 * 65536

    async def answer(request: web.Request, _: Server) -> web.StreamResponse:
        return await _stream(request, size, chunked=chunked)

    with app_server(answer) as server:
        async with client(server.url) as c:
            wrote = await c.put_task("t1", BODY)
            read = await c.request("GET", "/v3/tasks")
    assert wrote.ok
    assert wrote.body_cut
    assert wrote.raw_body == b""
    with pytest.raises(AnswerTooLarge, match="larger than 4 MiB"):
        read.json()


async def test_a_compressed_body_is_bounded_as_it_inflates() -> None:
    """64 MiB of zeros gzipped to ~64 KB: the Content-Length is small, the body is not."""
    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=9)
    assert len(bomb) < wire.MAX_BODY

    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip",
                                                "Content-Type": "application/json"})

    with app_server(answer) as server:
        async with client(server.url) as c:
            wrote = await c.put_task("t1", BODY)
            read = await c.request("GET", "/v3/tasks")
    assert wrote.ok
    assert wrote.body_cut
    with pytest.raises(AnswerTooLarge):
        read.json()


async def test_a_body_within_the_bound_is_read_whole() -> None:
    page = orjson.dumps({"count": 1, "tasks": [{"id": "x" * (wire.MAX_BODY - 100)}]})
    assert len(page) <= wire.MAX_BODY

    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.Response(body=page, content_type="application/json")

    with app_server(answer) as server:
        async with client(server.url) as c:
            reply = await c.request("GET", "/v3/tasks")
    assert reply.json() == orjson.loads(page)


async def test_a_huge_error_message_is_cut_with_a_marker() -> None:
    message = "e" * 1_000_000

    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.json_response({"error_code": "SMS.9999", "error_msg": message}, status=400)

    with app_server(answer) as server:
        reply = await put(server.url)
    assert reply.error_code == "SMS.9999"
    assert reply.error_msg == "e" * 1000 + "… (cut, 999000 more)"


# -- 5 and 6. transport failures in words, and whether the request was sent ------------------

PARSE_ERRORS = {
    "headers over 8 KiB": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000
                           + b"\r\nContent-Length: 0\r\n\r\n", "larger than 8 KiB"),
    "bad status line": (b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                        "did not start with an HTTP status line"),
    "body cut short": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", "was cut short"),
    "bad chunked encoding": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"zz\r\nabc\r\n0\r\n\r\n", "malformed chunked encoding"),
    "bad header": (b"HTTP/1.1 200 OK\r\nX Bad\x1b: 1\r\nContent-Length: 0\r\n\r\n",
                   "malformed headers"),
}


@pytest.mark.parametrize("case", PARSE_ERRORS)
async def test_an_answer_that_cannot_be_parsed_is_said_in_words_and_may_have_applied(
        case: str) -> None:
    raw, words = PARSE_ERRORS[case]
    with raw_server(raw) as server:
        error = await fails(server.url)
        async with client(server.url) as c:
            with pytest.raises(ConnectError) as read:
                await c.request("GET", "/v3/tasks")
    assert isinstance(error, ConnectError)
    assert error.sent
    message = str(error)
    assert words in message
    assert message.endswith("the update may have been applied")
    assert "may have been applied" not in str(read.value)  # a read applies nothing
    for leak in ("ClientResponseError", "message=", "aaaa", "\x1b", "wire-test-token"):
        assert leak not in message


async def test_a_closed_port_was_not_sent() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
        error = await fails(f"http://127.0.0.1:{port}")
    assert isinstance(error, ConnectError)
    assert not error.sent
    assert "the request was not sent" in str(error)


async def test_a_server_that_reads_the_request_then_closes_may_have_applied_it() -> None:
    with raw_server(b"") as server:
        error = await fails(server.url)
    assert server.count("PUT") == 1
    assert isinstance(error, ConnectError)
    assert error.sent
    assert "closed the connection without answering" in str(error)


async def test_a_timeout_after_the_request_left_was_sent() -> None:
    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response({})

    with app_server(answer) as server:
        error = await fails(server.url, timeout=0.3)
    assert isinstance(error, RequestTimeout)
    assert error.sent
    assert server.count("PUT") == 1


async def test_a_timeout_while_connecting_was_not_sent() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        # Fill the accept queue: further connection attempts get no SYN-ACK and hang.
        fillers = [socket.create_connection(("127.0.0.1", port), timeout=2)]
        extra = socket.socket()
        extra.setblocking(False)
        extra.connect_ex(("127.0.0.1", port))  # may or may not take a place: either way
        fillers.append(extra)
        try:
            error = await fails(f"http://127.0.0.1:{port}", timeout=0.5)
        finally:
            for filler in fillers:
                filler.close()
    assert isinstance(error, RequestTimeout)
    assert not error.sent
    assert "not sent" in str(error)


# -- 7. IPv6 literal endpoints -----------------------------------------------------------------


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
async def on_ipv6() -> AsyncIterator[Server]:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")

    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.json_response({"id": "t1"})

    with app_server(answer, host="::1") as server:
        yield server


@pytest.mark.parametrize("env", [TOKEN, AKSK], ids=["token", "aksk"])
async def test_an_ipv6_literal_endpoint_sends_a_bracketed_host_and_signs_it(
        env: dict[str, str], on_ipv6: Server) -> None:
    assert on_ipv6.url == f"http://[::1]:{on_ipv6.port}"
    reply = await put(on_ipv6.url, env)
    assert reply.ok
    seen = on_ipv6.received[0]
    assert seen.headers["Host"] == f"[::1]:{on_ipv6.port}"
    if env is AKSK:
        assert verify_signature("PUT", task_path("t1"), (), seen.headers, seen.body,
                                AKSK["HUAWEICLOUD_SDK_AK"], AKSK["HUAWEICLOUD_SDK_SK"],
                                datetime.now(UTC)) is None


_EMFILE_SCRIPT = """
import asyncio, resource, socket
from batchsms.transport.client import SmsClient
from batchsms.errors import ConnectError

async def main(port):
    async with SmsClient(f"http://127.0.0.1:{port}", None, concurrency=1, timeout=5) as client:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        held = []
        try:
            while True:
                held.append(open("/dev/null"))
        except OSError:
            pass
        try:
            await client.put_task("t1", b"{}")
        except ConnectError as exc:
            print(exc.sent, exc)

asyncio.run(main(int(__import__("sys").argv[1])))
"""


def test_no_descriptor_left_was_not_sent() -> None:
    """EMFILE when opening the socket: not sent, and said as such (in a subprocess, whose
    descriptors can be used up without harming the test run)."""
    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.json_response({})

    with app_server(answer) as server:
        result = subprocess.run([sys.executable, "-c", _EMFILE_SCRIPT, str(server.port)],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.startswith("False "), result.stdout + result.stderr
    assert "no file descriptor left" in result.stdout
    assert server.received == []


# -- 7. known secrets are cut out of answers (CONTRACT §6) ---------------------------------

SECRET = "MIIwire+secret/té st=="  # a '/', a '+', a space, '=' and a non-ASCII letter


def _encodings(secret: str) -> list[str]:
    url = quote(secret, safe="")
    escaped = [orjson.dumps(secret)[1:-1].decode(), json.dumps(secret)[1:-1]]
    lower = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), url)
    return [secret, url, lower, quote(secret), quote_plus(secret),
            *escaped, *(e.replace("/", "\\/") for e in escaped)]


def test_every_form_of_a_known_secret_is_cut_out_of_text() -> None:
    redact = wire.Redactor([SECRET, "short", ""])
    for form in _encodings(SECRET):
        assert redact.text(f"<{form}>") == "<[redacted]>", form
    mixed = quote(SECRET, safe="").replace("%2B", "%2b")  # escapes in both cases at once
    assert "%2F" in mixed
    assert redact.text(mixed) == "[redacted]"
    assert redact.text("a short text") == "a short text"  # below MIN_SECRET: left alone
    assert redact.safe(f"{'x' * 995}{SECRET}", 1000) == "x" * 995 + "[reda… (cut, 5 more)"
    assert SECRET not in repr(redact)
    assert repr(redact) == "Redactor(1 secrets)"
    assert not wire.Redactor(["1234567"])  # nothing long enough: nothing to look for
    assert wire.Redactor(["12345678"])


def test_a_secret_in_a_json_body_is_cut_and_the_body_stays_json() -> None:
    token = "abc/def+ghi\"jkl\\mno"
    redact = wire.Redactor([token, SECRET])
    for dump in (orjson.dumps, lambda v: json.dumps(v).encode(),
                 lambda v: json.dumps(v).replace("/", "\\/").encode()):
        body = dump({"name": f"n {token} {SECRET}", "url": f"/x?t={quote(token, safe='')}",
                     "count": 2})
        assert orjson.loads(redact.body(body)) == {
            "name": "n [redacted] [redacted]", "url": "/x?t=[redacted]", "count": 2}
    clean = b'{"id": "t1", "name": "web-01"}'
    assert redact.body(clean) is clean  # nothing to cut: the same bytes, not a copy


def test_a_secret_without_any_plain_run_is_still_cut() -> None:
    """The quick test looks for the longest run that no encoding changes; a secret with none
    of 4 characters is looked for with the pattern alone."""
    odd = "+/=+/=+/=+/="
    redact = wire.Redactor([odd, SECRET])
    assert redact.text(f"a {odd} b {quote(odd, safe='')}") == "a [redacted] b [redacted]"
    assert redact.body(orjson.dumps({"v": odd})) == b'{"v":"[redacted]"}'


def test_the_longest_secret_is_cut_whole() -> None:
    """One secret inside another (an AK inside a longer token): the longer is cut whole."""
    redact = wire.Redactor(["AKINSIDE0000", "token-AKINSIDE0000-tail"])
    assert redact.text("token-AKINSIDE0000-tail AKINSIDE0000") == "[redacted] [redacted]"


@pytest.mark.parametrize("env", [TOKEN, AKSK], ids=["token", "aksk+sts"])
async def test_the_client_cuts_what_a_server_echoes_and_only_reads_bodies_it_is_asked_for(
        env: dict[str, str]) -> None:
    """Header, error fields, Location, a read's body: the secrets the request carried are cut
    out. A write's 200 body is not scanned at all (`raw_body` keeps what came), only what
    `json()` gives a reader."""
    async def echo(request: web.Request, _: Server) -> web.StreamResponse:
        sent = request.headers.get("X-Auth-Token") or request.headers["X-Security-Token"]
        headers = {"X-Request-Id": sent}
        if request.path.endswith("/fail"):
            return web.json_response({"error_code": sent, "error_msg": f"no {quote(sent)}"},
                                     status=403, headers=headers)
        if request.path.endswith("/moved"):
            return web.Response(status=302, headers={**headers, "Location": f"/{sent}/x"})
        return web.json_response({"id": sent}, headers=headers)

    secret = env.get("BATCHSMS_AUTH_TOKEN") or env["HUAWEICLOUD_SDK_SECURITY_TOKEN"]
    with app_server(echo) as server:
        async with client(server.url, env) as c:
            wrote = await c.put_task("t1", BODY)
            read = await c.request("GET", task_path("t1"))
            failed = await c.put_task("fail", BODY)
            moved = await c.put_task("moved", BODY)
    for reply in (wrote, read, failed, moved):
        assert reply.request_id == "[redacted]"
    assert secret.encode() in wrote.raw_body  # never looked at: a write's answer is its status
    assert read.json() == {"id": "[redacted]"}
    assert (failed.error_code, failed.error_msg) == ("[redacted]", "no [redacted]")
    assert moved.error_msg is not None
    assert "/[redacted]/x" in moved.error_msg
    assert secret not in moved.error_msg
