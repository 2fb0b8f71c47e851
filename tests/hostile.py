"""Servers that misbehave on purpose, on loopback, in a background thread (for tests).

`app_server(handler)`: a real aiohttp server whose every request (any method, any path) goes to
`handler`, for well-formed but hostile answers (redirects, huge bodies, huge error messages).
`raw_server(answer)`: a plain asyncio TCP server that reads each request and writes `answer`'s
bytes as they are, then closes: for what aiohttp's server would refuse to send (a non-UTF-8
header byte, a bad status line, 9 KiB of headers, a body cut short, a broken chunked encoding).
Both record every request that reaches them, so tests can count what arrived (and prove that
nothing arrived at a server a redirect pointed to).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web


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


@contextmanager
def _in_thread(start: Callable[[Server], Awaitable[Callable[[], Awaitable[None]]]]
               ) -> Iterator[Server]:
    server = Server()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop_box: list[Callable[[], Awaitable[None]]] = []
    failure: list[BaseException] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            stop_box.append(loop.run_until_complete(start(server)))
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stop_box[0]())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "test server did not start"
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


Handler = Callable[[web.Request, Server], Awaitable[web.StreamResponse]]


@contextmanager
def app_server(handler: Handler, host: str = "127.0.0.1") -> Iterator[Server]:
    """An aiohttp server sending every request to `handler(request, server)`."""
    async def start(server: Server) -> Callable[[], Awaitable[None]]:
        async def record(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            server.received.append(Seen(request.method, request.raw_path,
                                        dict(request.headers), body))
            return await handler(request, server)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, 0)
        await site.start()
        server.port = runner.addresses[0][1]
        server.url = _url(host, server.port)
        return runner.cleanup

    with _in_thread(start) as server:
        yield server


@contextmanager
def raw_server(answer: bytes | Callable[[Seen], bytes]) -> Iterator[Server]:
    """Reads each request, writes `answer` (or `answer(request)`) as raw bytes, closes."""
    async def start(server: Server) -> Callable[[], Awaitable[None]]:
        async def on_connection(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
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
        server.port = listener.sockets[0].getsockname()[1]
        server.url = _url("127.0.0.1", server.port)

        async def stop() -> None:
            listener.close()
            await listener.wait_closed()

        return stop

    with _in_thread(start) as server:
        yield server
