"""A scripted SMS endpoint for tests: a real aiohttp server on 127.0.0.1 in a background thread.

Each task id can be given a script of answers, used one per request, then 200 for ever:
`Answer(status, headers, body)`, `RESET` (close the connection without a response) or
`Hang(seconds)` (answer only after a delay). Every request that reaches the server is recorded
with its arrival time, so tests can compare a client's `attempts` with what really arrived.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


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
        self._lock = threading.Lock()

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


@contextmanager
def scripted_server(default: Answer | None = None, port: int = 0) -> Iterator[ScriptedServer]:
    server = ScriptedServer(default)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    runner_box: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application()
        app.router.add_route("*", "/v3/tasks/{task_id}", server.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        runner_box.append(runner)
        ready.set()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()
        loop.run_until_complete(runner_box[0].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10), "scripted server did not start"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
