"""The simulator's aiohttp application: a gateway middleware in front of five SMS routes.

Routes (the paths the official SDK's ``SmsClient`` uses)::

    PUT  /v3/tasks/{task_id}              UpdateTask: 200 {"id": task_id}
    GET  /v3/tasks/{task_id}              ShowTask: the task object
    GET  /v3/tasks                        ListTasks: {"count": N, "tasks": [...]}
    POST /v3/tasks/{task_id}/speed-limit  UpdateSpeed: replaces the task's rules; 200 {}
    GET  /v3/tasks/{task_id}/speed-limit  ShowsSpeedLimits: {"speed_limit": [...]}

The gateway (`_gateway`) does, for every request: count it (per task id for writes: PUT and
UpdateSpeed's POST), draw its faults
(faults.py), wait the latency, maybe drop the connection, check credentials (access.py), throttle,
maybe fail with a 5xx, maybe hang, then hand over to the route; after an update the route
applied, maybe drop the answer or hold it back (``lose_rate``, ``late_rate``). Every answer
carries a fresh ``X-Request-Id``; every error is ``{"error_code", "error_msg"}`` (Table 14),
plus ``request_id`` from the gateway, ``error_param``/``details`` for validation errors.

Error codes (the simulator's own choice where the real service's are undocumented):

    400 SMS.0201  body is not JSON            400 SMS.0205  body breaks the schema (every path;
                                                            UpdateTask's or UpdateSpeed's, §11)
    400 SMS.0203  bad ListTasks query         400 SMS.0204  task_id not 1-36 characters
    404 SMS.1801  task not in the fleet       413 SMS.0206  body too large
    400 SMS.1810  clone_server update in a source state Table 3 does not allow (fleet.py)
    403 SMS.9004  permission denied (injected; Table 14-15's body, the page's own code)
    415 SMS.0202  Content-Type is not JSON    500 SMS.9999  internal error (injected)
    503 SMS.9998  service unavailable         502 APIG.0201 / 504 APIG.0202  backend down / slow
    401 APIG.0301 authentication failed       429 APIG.0308 throttled
    404 APIG.0101 no such API                 405 APIG.0101 method not allowed on that API

The handlers are lean on purpose (no per-request logging, no access log): the same app serves
``run --simulate`` at thousands of requests per second.

Size (~380 lines): one job, the HTTP face of the simulator. The gateway and the three routes
share the state, the error format and the request record; what can stand alone already does
(faults.py, access.py with gateway.py, fleet.py, views.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from batchsms.lines.reader import MAX_TASK_ID
from batchsms.lines.schema import Problem, validate
from batchsms.lines.speed_rules import validate_speed_limit
from batchsms.simulator.access import ExpectedCredentials
from batchsms.simulator.faults import FaultInjector, Injection, OutageKind
from batchsms.simulator.fleet import STATES, Fleet

__all__ = ["STATE", "WRITES", "Received", "SimulatorState", "Stats", "build_app"]

MAX_BODY = 8 * 1024 * 1024
ERROR_MSG_MAX = 255  # Table 14: error_msg is at most 255 characters
ERROR_PARAM_MAX = 20  # Table 14/15: error_param and details hold 1-20 items
LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX = 100, 200  # ListTasks: limit 0-200, default 100
LIST_OFFSET_MAX = 65535  # ListTasks: offset 0-65535
LIST_FILTERS = ("state", "name", "id", "source_server_id", "enterprise_project_id")
_REDACTED_HEADERS = frozenset({"x-auth-token", "x-security-token"})
WRITES = frozenset({"PUT", "POST"})  # UpdateTask, UpdateSpeed: counted per task, lost or late

_FAILURES = {
    500: ("SMS.9999", "Internal server error (injected fault)"),
    502: ("APIG.0201", "Backend unavailable (injected fault)"),
    503: ("SMS.9998", "Service temporarily unavailable (injected fault)"),
    504: ("APIG.0202", "Backend timeout (injected fault)"),
}


class Received(NamedTuple):
    """One request as the simulator saw it; ``status`` None means the connection was dropped."""

    at: float  # time.time() on arrival
    method: str
    path: str  # as received: percent-encoded, with any query string
    task_id: str | None  # decoded, for /v3/tasks/{task_id}
    headers: Mapping[str, str]  # as received, X-Auth-Token / X-Security-Token redacted
    body: bytes
    status: int | None
    request_id: str


@dataclass(slots=True)
class Stats:
    """Totals since start: requests received, updates applied, answers by status, resets.

    ``resets`` counts connections dropped without an answer (``reset_rate`` and outages of kind
    ``refuse``/``close`` alike).
    """

    received: int = 0
    applied: int = 0
    resets: int = 0
    by_status: Counter[int] = field(default_factory=Counter)


@dataclass(slots=True)
class SimulatorState:
    """Everything the handlers touch; one per server, reachable as ``app[STATE]``."""

    fleet: Fleet
    faults: FaultInjector
    credentials: ExpectedCredentials
    stats: Stats = field(default_factory=Stats)
    log: deque[Received] | None = None
    # open connections, so that a 'refuse' outage can drop the kept-alive ones (server.py)
    transports: set[asyncio.Transport] = field(default_factory=set)
    first_request: asyncio.Event = field(default_factory=asyncio.Event)


STATE = web.AppKey("batchsms_simulator_state", SimulatorState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Drop(web.HTTPInternalServerError):
    """Raised once the transport is aborted: aiohttp finds nothing to write to, and stays quiet."""


# -- responses ------------------------------------------------------------------------------


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, code: str, msg: str, **extra: object) -> web.Response:
    if len(msg) > ERROR_MSG_MAX:
        msg = msg[:ERROR_MSG_MAX - 3] + "..."
    return _json({"error_code": code, "error_msg": msg, **extra}, status)


# -- the gateway ------------------------------------------------------------------------------


def drop_transport(transport: asyncio.Transport) -> None:
    """Abort with a TCP RST, so the client sees a reset, never an HTTP status."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _close_connection(request: web.Request) -> None:
    """Close with a FIN and no answer (the client sees the server disconnect)."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already gone
            sock.shutdown(socket.SHUT_RDWR)
    transport.abort()  # after the FIN: nothing aiohttp writes next can leave


def _track(state: SimulatorState, request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    transports = state.transports
    if len(transports) > 4096:
        transports.difference_update([t for t in transports if t.is_closing()])
    transports.add(transport)


def _record(state: SimulatorState, request: web.Request, task_id: str | None, body: bytes,
            status: int | None, request_id: str, at: float) -> None:
    log = state.log
    if log is None:
        return
    headers = {k: ("***" if k.lower() in _REDACTED_HEADERS else v)
               for k, v in request.headers.items()}
    log.append(Received(at, request.method, request.raw_path, task_id, headers, body, status,
                        request_id))


@web.middleware
async def _gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    at = time.time()
    state = request.app[STATE]
    request_id = secrets.token_hex(16)
    state.stats.received += 1
    state.first_request.set()
    _track(state, request)
    task_id: str | None = request.match_info.get("task_id")
    if task_id is not None and request.method in WRITES:
        state.fleet.received(task_id)
    decision = state.faults.decide()
    if decision.delay_s:
        await asyncio.sleep(decision.delay_s)

    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        response: web.StreamResponse = _error(
            413, "SMS.0206", f"request body is larger than {MAX_BODY} bytes")
        body = b""
    except ConnectionResetError:  # the client went away mid-request (e.g. it was killed)
        _record(state, request, task_id, b"", None, request_id, at)
        raise _Drop from None
    else:
        outage = decision.outage
        dropped = outage is not None and outage.kind is not OutageKind.STATUS
        if decision.reset or dropped:
            state.stats.resets += 1
            _record(state, request, task_id, body, None, request_id, at)
            if outage is not None and outage.kind is OutageKind.CLOSE:
                _close_connection(request)
            elif request.transport is not None:
                drop_transport(request.transport)
            raise _Drop
        response = await _admit_and_serve(state, request, handler, body, decision, request_id)
        if request.method in WRITES and response.status == 200:  # a write that was applied
            if decision.lose and request.transport is not None:
                state.stats.resets += 1
                _record(state, request, task_id, body, None, request_id, at)
                drop_transport(request.transport)
                raise _Drop
            if decision.late_s:
                await asyncio.sleep(decision.late_s)
    response.headers["X-Request-Id"] = request_id
    state.stats.by_status[response.status] += 1
    _record(state, request, task_id, body, response.status, request_id, at)
    return response


def _outage_error(status: int, request_id: str) -> web.Response:
    if status == 429:
        code, msg = "APIG.0308", "The throttling threshold has been reached"
    else:
        code, msg = _FAILURES.get(status, ("SMS.9999", "Service error"))
    return _error(status, code, msg.replace("(injected fault)", "").rstrip() + " (injected outage)",
                  request_id=request_id)


def _forbidden(request_id: str) -> web.Response:
    """Table 14-15's 403: the permission error, with every field the reference page shows."""
    detail = ("You do not have permission to perform action sms:server:migrate on resource "
              "sms:*:*:task:* (injected fault).")
    return _error(403, "SMS.9004", "The current account does not have the permission to execute "
                  f"policy. {detail}", request_id=request_id,
                  encoded_authorization_message=secrets.token_urlsafe(48),
                  error_param=[detail], details=[{"error_code": "SMS.9004", "error_msg": detail}])


async def _admit_and_serve(state: SimulatorState, request: web.Request, handler: Handler,
                           body: bytes, decision: Injection,
                           request_id: str) -> web.StreamResponse:
    reason = state.credentials.check(request.method, request.raw_path,
                                     list(request.query.items()), request.headers, body,
                                     datetime.now(UTC))
    if reason is not None:
        return _error(401, "APIG.0301", f"Incorrect IAM authentication information: {reason}",
                      request_id=request_id)
    faults = state.faults
    if decision.throttled or not faults.admit():
        retry_after = faults.config.retry_after
        response = _error(
            429, "APIG.0308",
            "The throttling threshold has been reached: policy user over ratelimit, "
            f"{faults.throttle_limit()}", request_id=request_id)
        if retry_after is not None:
            response.headers["Retry-After"] = str(math.ceil(retry_after))
        return response
    if decision.outage is not None:
        return _outage_error(decision.outage.status, request_id)
    if decision.forbidden:
        return _forbidden(request_id)
    if decision.fail_status is not None:
        code, msg = _FAILURES[decision.fail_status]
        return _error(decision.fail_status, code, msg, request_id=request_id)
    if decision.hang_s:
        await asyncio.sleep(decision.hang_s)
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, "APIG.0101", "The API does not exist or has not been published in "
                      "the environment", request_id=request_id)
    except web.HTTPMethodNotAllowed as exc:
        response = _error(405, "APIG.0101", f"Method {request.method} is not allowed on this "
                          f"API (allowed: {', '.join(sorted(exc.allowed_methods))})",
                          request_id=request_id)
        response.headers["Allow"] = ",".join(sorted(exc.allowed_methods))
        return response


# -- routes -------------------------------------------------------------------------------------


def _task_id(request: web.Request) -> tuple[str, web.Response | None]:
    task_id = request.match_info["task_id"]
    if len(task_id) > MAX_TASK_ID:
        return task_id, _error(400, "SMS.0204", f"task_id must be 1 to {MAX_TASK_ID} characters, "
                               f"got {len(task_id)}")
    return task_id, None


def _not_found(task_id: str) -> web.Response:
    return _error(404, "SMS.1801", f"task {task_id!r} not found")


Validator = Callable[[object], tuple[dict[str, Any], list[Problem]]]


async def _write_request(request: web.Request,
                         check: Validator) -> tuple[str, dict[str, Any], web.Response | None]:
    """A write's task id and checked body, or the answer refusing it (id too long, not JSON,
    not the body `check` wants: every problem by path)."""
    task_id, problem = _task_id(request)
    if problem is not None:
        return task_id, {}, problem
    if request.content_type != "application/json":
        return task_id, {}, _error(
            415, "SMS.0202", "Content-Type must be application/json, got "
            f"{request.headers.get('Content-Type', 'none')!r}")
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return task_id, {}, _error(400, "SMS.0201", f"request body is not valid JSON: {exc}")
    clean, problems = check(data)
    if not problems:
        return task_id, clean, None
    shown = problems[:ERROR_PARAM_MAX]
    summary = "; ".join(f"{p.path}: {p.message}" for p in problems)
    return task_id, {}, _error(
        400, "SMS.0205", f"invalid request body: {summary}", error_param=[p.path for p in shown],
        details=[{"error_code": "SMS.0205", "error_msg": f"{p.path}: {p.message}"}
                 for p in shown])


async def update_task(request: web.Request) -> web.Response:
    """UpdateTask: JSON only, validated with the project's schema, deep-merged into the task."""
    task_id, clean, refused = await _write_request(request, validate)
    if refused is not None:
        return refused
    state = request.app[STATE]
    refusal = state.fleet.refusal(task_id, clean)
    if refusal is not None:
        return _error(400, "SMS.1810", refusal)
    ignored = state.faults.config.ignore_fields
    if ignored:
        clean = _without(clean, ignored)
    if not state.fleet.apply(task_id, clean):
        return _not_found(task_id)
    state.stats.applied += 1
    return _json({"id": task_id})


async def update_speed(request: web.Request) -> web.Response:
    """UpdateSpeed: JSON only, validated as batchsms validates it (§11), then it replaces the
    task's rules (an empty list clears them). Answers 200 ``{}``: the SDK's
    ``UpdateSpeedResponse`` carries nothing but the raw body."""
    task_id, clean, refused = await _write_request(request, validate_speed_limit)
    if refused is not None:
        return refused
    state = request.app[STATE]
    if not state.fleet.set_rules(task_id, clean["speed_limit"]):
        return _not_found(task_id)
    state.stats.applied += 1
    return _json({})


async def show_speed_limits(request: web.Request) -> web.Response:
    """ShowsSpeedLimits: the task's rules, ``{"speed_limit": [...]}`` (empty when it has none)."""
    task_id, problem = _task_id(request)
    if problem is not None:
        return problem
    rules = request.app[STATE].fleet.rules(task_id)
    return _not_found(task_id) if rules is None else _json({"speed_limit": rules})


def _without(body: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``body`` without these dotted paths (the ``ignore_fields`` fault)."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(body))
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = copy
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return copy


async def show_task(request: web.Request) -> web.Response:
    """ShowTask: the task's current view."""
    task_id, problem = _task_id(request)
    if problem is not None:
        return problem
    view = request.app[STATE].fleet.show(task_id)
    return _not_found(task_id) if view is None else _json(view)


def _int_param(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or int(text) > maximum:
        raise ValueError(f"{name} must be an integer from 0 to {maximum}, got {text!r}")
    return int(text)


async def list_tasks(request: web.Request) -> web.Response:
    """ListTasks: filters (exact match), then the page ``[offset, offset+limit)``."""
    query = request.query
    try:
        limit = _int_param(query, "limit", LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX)
        offset = _int_param(query, "offset", 0, LIST_OFFSET_MAX)
    except ValueError as exc:
        return _error(400, "SMS.0203", str(exc))
    filters = {name: query[name] for name in LIST_FILTERS if name in query}
    state = filters.get("state")
    if state is not None and state not in STATES:
        return _error(400, "SMS.0203", f"state must be one of {', '.join(STATES)}; got {state!r}")
    count, tasks = request.app[STATE].fleet.list(filters, limit, offset)
    return _json({"count": count, "tasks": tasks})


def build_app(state: SimulatorState) -> web.Application:
    """The application for one simulator; its state is ``app[STATE]``."""
    app = web.Application(middlewares=[_gateway], client_max_size=MAX_BODY)
    app[STATE] = state
    app.router.add_put("/v3/tasks/{task_id}", update_task)
    app.router.add_get("/v3/tasks/{task_id}", show_task, allow_head=False)
    app.router.add_get("/v3/tasks", list_tasks, allow_head=False)
    app.router.add_post("/v3/tasks/{task_id}/speed-limit", update_speed)
    app.router.add_get("/v3/tasks/{task_id}/speed-limit", show_speed_limits, allow_head=False)
    return app
