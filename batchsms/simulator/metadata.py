"""Rehearsal endpoints for temporary credentials: ECS metadata, CCE pod identity, IAM projects.

Place in the flow: a stand-in for what a fleet host has and a laptop has not, so that tests,
CI and users can rehearse a run through several generations of short-lived credentials
(docs/reference.md §8). :func:`metadata_app` serves, on one aiohttp application:

- ``PUT /meta-data/latest/api/token`` (needs ``X-Metadata-Token-Ttl-Seconds``): a session
  token; with ``token_status`` 404/405 this answers that status instead (an older service);
- ``GET /openstack/latest/securitykey``: new temporary credentials, each call a new generation
  living ``lifetime`` seconds (with a session token issued, the request must carry it in
  ``X-Metadata-Token``: 401 otherwise);
- ``POST /pod-identity/credentials``: the same, for ``Authorization: <pod_token>`` (401
  otherwise), as CCE's pod identity agent answers ``HC_CONTAINER_CREDENTIALS_FULL_URI``;
- ``GET /v3/projects?name=REGION`` (IAM's KeystoneListProjects): checks the SDK-HMAC-SHA256
  signature against the credentials it issued (unexpired, with their ``X-Security-Token``)
  and answers ``{"projects": [{"id", "name"}]}`` from ``projects`` (empty for an unknown
  region).

:class:`MetadataState` is the knob board: ``failing`` set to a status makes the credential
routes answer it (a source that stops answering mid-run); ``issued`` counts generations.
Everything is in memory; the clock (seconds since the epoch) is injectable.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from batchsms.simulator.gateway import verify_signature

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["POD_IDENTITY_PATH", "MetadataState", "add_metadata_routes", "metadata_app"]

POD_IDENTITY_PATH = "/pod-identity/credentials"


@dataclass(frozen=True, slots=True, repr=False)
class Issued:
    secret: str
    security_token: str
    expires_at: float


@dataclass(slots=True, repr=False)
class MetadataState:
    """How the rehearsal endpoints behave, and what they issued (module docstring)."""

    lifetime: float = 3600.0
    pod_token: str = "pod-identity-token-for-rehearsals"  # noqa: S105 - a rehearsal value
    token_status: int = 200
    failing: int | None = None
    projects: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    issued: dict[str, Issued] = field(default_factory=dict)
    session_tokens: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"MetadataState(lifetime={self.lifetime}, generations={len(self.issued)})"

    def mint(self) -> dict[str, str]:
        """New temporary credentials, as the services answer them."""
        ak = f"TMP{len(self.issued) + 1:04d}{secrets.token_hex(8).upper()}"
        issued = Issued(secrets.token_urlsafe(30), secrets.token_urlsafe(120),
                        self.clock() + self.lifetime)
        self.issued[ak] = issued
        expires = datetime.fromtimestamp(issued.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {"access": ak, "secret": issued.secret, "securitytoken": issued.security_token,
                "expires_at": expires}

    def issued_to(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header names an access key issued here."""
        return _access_key(authorization) in self.issued

    def check_signature(self, method: str, raw_path: str, query: Sequence[tuple[str, str]],
                        headers: Mapping[str, str], body: bytes) -> str | None:
        """None when a request is signed with credentials issued here and still valid (their
        ``X-Security-Token`` with them), else a short reason that quotes no secret. For IAM's
        route here, and for an SMS gateway that accepts the issued credentials."""
        received = {key.lower(): value for key, value in headers.items()}
        access = _access_key(received.get("authorization", ""))
        issued = self.issued.get(access)
        if issued is None:
            return "unknown access key"
        if self.clock() >= issued.expires_at:
            return "the temporary credentials have expired"
        if received.get("x-security-token") != issued.security_token:
            return "X-Security-Token does not belong to the access key"
        return verify_signature(method, raw_path, query, headers, body, access,
                                issued.secret, datetime.fromtimestamp(self.clock(), UTC))


def _access_key(authorization: str) -> str:
    return authorization.partition("Access=")[2].partition(",")[0].strip()


def _credential_answer(state: MetadataState) -> web.Response:
    from aiohttp import web

    if state.failing is not None:
        return web.json_response({"error": "rehearsed failure"}, status=state.failing)
    return web.json_response({"credential": state.mint()})


def metadata_app(state: MetadataState) -> web.Application:
    """The rehearsal endpoints of the module docstring, driven by ``state``, as an app of their
    own (tests serve it with ``tests.servers.serving``)."""
    from aiohttp import web

    app = web.Application()
    add_metadata_routes(app, state)
    return app


def add_metadata_routes(app: web.Application, state: MetadataState) -> None:
    """Mount the rehearsal endpoints on ``app`` (no route of the SMS API starts with these
    paths; the simulator serves them on a port of their own, away from its gateway check)."""
    from aiohttp import web  # only when serving: simulator/cli.py imports this module cheaply

    async def token(request: web.Request) -> web.Response:
        state.requests.append("token")
        if state.token_status != 200:
            return web.Response(status=state.token_status)
        if not request.headers.get("X-Metadata-Token-Ttl-Seconds", "").isdigit():
            return web.Response(status=400, text="X-Metadata-Token-Ttl-Seconds is required")
        value = secrets.token_urlsafe(24)
        state.session_tokens.add(value)
        return web.Response(text=value)

    async def security_key(request: web.Request) -> web.Response:
        state.requests.append("securitykey")
        sent = request.headers.get("X-Metadata-Token")
        if state.session_tokens and sent not in state.session_tokens:
            return web.Response(status=401, text="a valid X-Metadata-Token is required")
        return _credential_answer(state)

    async def pod_identity(request: web.Request) -> web.Response:
        state.requests.append("pod-identity")
        if request.headers.get("Authorization") != state.pod_token:
            return web.json_response({"error": "unauthorized"}, status=401)
        return _credential_answer(state)

    async def projects(request: web.Request) -> web.Response:
        state.requests.append("projects")
        reason = state.check_signature(request.method, request.raw_path,
                                       list(request.query.items()), request.headers,
                                       await request.read())
        if reason is not None:
            return web.json_response({"error_code": "APIG.0301", "error_msg": reason}, status=401)
        name = request.query.get("name", "")
        found = [{"id": state.projects[name], "name": name}] if name in state.projects else []
        return web.json_response({"projects": found})

    app.router.add_put("/meta-data/latest/api/token", token)
    app.router.add_get("/openstack/latest/securitykey", security_key)
    app.router.add_post(POD_IDENTITY_PATH, pod_identity)
    app.router.add_get("/v3/projects", projects)
