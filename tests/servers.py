"""Loopback servers for tests, all hosted one way.

`serving(app)` serves an aiohttp app on 127.0.0.1 (or ::1) and yields its URL: entered with
`async with` on the test's own event loop, or in a background thread through
`batchsms.simulator.threaded.serve_in_thread` (`in_thread(serving(app))`), the host the
threaded simulator uses too, for tests that drive a `batchsms` subprocess or a synchronous
client. Built on them:

- `scripted_server()`: a scripted SMS endpoint. Each task id can be given a script of answers,
  used one per request, then the default for ever: `Answer(status, headers, body)`, `RESET`
  (close the connection without a response) or `Hang(seconds)` (answer only after a delay).
  Every request is recorded with its arrival time, so tests can compare a client's `attempts`
  with what really arrived.
- `app_server(handler)`: every request (any method, any path) goes to `handler`, for
  well-formed but hostile answers (redirects, huge bodies, huge error messages).
- `raw_server(answer)`: a plain asyncio TCP server that reads each request and writes `answer`'s
  bytes as they are, then closes: for what aiohttp's server would refuse to send (a non-UTF-8
  header byte, a bad status line, 9 KiB of headers, a body cut short, a broken chunked
  encoding).

`app_server` and `raw_server` record every request as a `Seen`, so tests can count what arrived
(and prove that nothing arrived at a server a redirect pointed to).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web

from batchsms.simulator.threaded import serve_in_thread

T = TypeVar("T")


def url_of(host: str, port: int, scheme: str = "http") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


@asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                  ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Serve `app` on `host`; yield its URL; clean up on exit."""
    # handler_cancellation: a handler whose client went away (a hung answer the client gave up
    # on) is cancelled, so it cannot hold the server's shutdown for its whole hang.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        yield url_of(host, runner.addresses[0][1], "https" if ssl_context else "http")
    finally:
        await runner.cleanup()


@contextmanager
def in_thread(server: AbstractAsyncContextManager[T]) -> Iterator[T]:
    """Enter `server` on an event loop of its own, in a background thread."""
    with serve_in_thread(lambda: server) as hosted:
        yield hosted.value


# -- the scripted SMS endpoint ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Hang:
    seconds: float
    then: Answer = field(default_factory=Answer)


RESET = "reset"


@dataclass
class Received:
    task_id: str
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    start: float
    end: float = 0.0


class ScriptedServer:
    def __init__(self, default: Answer | None = None) -> None:
        self.scripts: dict[str, deque[Any]] = defaultdict(deque)
        self.default = default or Answer()
        self.received: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""

    def script(self, task_id: str, *answers: Any) -> None:
        self.scripts[task_id].extend(answers)

    def count(self, task_id: str) -> int:
        return sum(1 for r in self.received if r.task_id == task_id)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        task_id = request.match_info["task_id"]
        body = await request.read()
        record = Received(task_id, request.method, request.raw_path, dict(request.headers), body,
                          time.monotonic())
        self.received.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            queue = self.scripts.get(task_id)
            action = queue.popleft() if queue else self.default
            if isinstance(action, Hang):
                await asyncio.sleep(action.seconds)
                action = action.then
            if action == RESET:
                assert request.transport is not None
                request.transport.close()
                raise ConnectionResetError("scripted reset")
            headers = {"X-Request-Id": f"req-{len(self.received)}", **action.headers}
            payload = action.body if action.body is not None else (
                {"id": task_id} if action.status < 300 else
                {"error_code": f"SMS.{action.status}", "error_msg": f"scripted {action.status}"})
            return web.Response(status=action.status, body=orjson.dumps(payload),
                                headers=headers, content_type="application/json")
        finally:
            self.in_flight -= 1
            record.end = time.monotonic()

    @asynccontextmanager
    async def serving(self, port: int = 0) -> AsyncIterator[ScriptedServer]:
        app = web.Application()
        app.router.add_route("*", "/v3/tasks/{task_id}", self.handle)
        app.router.add_route("*", "/v3/tasks/{task_id}/speed-limit", self.handle)
        async with serving(app, port=port) as self.url:
            yield self


@contextmanager
def scripted_server(default: Answer | None = None, port: int = 0) -> Iterator[ScriptedServer]:
    """A `ScriptedServer` in a background thread."""
    with in_thread(ScriptedServer(default).serving(port)) as server:
        yield server


# -- hostile servers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str = ""
    port: int = 0
    received: list[Seen] = field(default_factory=list)

    def count(self, method: str | None = None) -> int:
        return sum(1 for r in self.received if method in (None, r.method))


Handler = Callable[[web.Request, Server], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _app_serving(handler: Handler, host: str) -> AsyncIterator[Server]:
    server = Server()

    async def record(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        server.received.append(Seen(request.method, request.raw_path, dict(request.headers),
                                    body))
        return await handler(request, server)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with serving(app, host) as server.url:
        server.port = int(server.url.rsplit(":", 1)[1])
        yield server


@contextmanager
def app_server(handler: Handler, host: str = "127.0.0.1") -> Iterator[Server]:
    """An aiohttp server sending every request to `handler(request, server)`."""
    with in_thread(_app_serving(handler, host)) as server:
        yield server


@asynccontextmanager
async def _raw_serving(answer: bytes | Callable[[Seen], bytes]) -> AsyncIterator[Server]:
    server = Server()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            length = int(headers.get("Content-Length", "0"))
            body = await reader.readexactly(length) if length else b""
            seen = Seen(method, path, headers, body)
            server.received.append(seen)
            writer.write(answer(seen) if callable(answer) else answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        server.port = listener.sockets[0].getsockname()[1]
        server.url = url_of("127.0.0.1", server.port)
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@contextmanager
def raw_server(answer: bytes | Callable[[Seen], bytes]) -> Iterator[Server]:
    """Reads each request, writes `answer` (or `answer(request)`) as raw bytes, closes."""
    with in_thread(_raw_serving(answer)) as server:
        yield server
