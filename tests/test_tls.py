"""TLS is always verified (CONTRACT §4 `--ca-bundle`): a self-signed loopback HTTPS server.

A CA and a server certificate for 127.0.0.1/localhost come from `trustme`. Without
`--ca-bundle` the server is refused: the line fails with `error_code` `connection` and a
certificate error in `error_msg`, and no request reaches the handler. With `--ca-bundle CA.pem`
the same line succeeds. A certificate from the trusted CA for another host name is still
refused, and an unusable `--ca-bundle` is exit 2 with one line. `tasks` likewise. A refused
certificate before any answer came stops `run` at once with exit 2 (the configuration, not an
outage: test_unreachable.py).
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests import processes
from tests.processes import Here
from tests.servers import in_thread, serving

trustme = pytest.importorskip("trustme", reason="trustme makes the test CA (pip install trustme)")

TOKEN = "tls-test-token-0123456789"


@dataclass
class TlsServer:
    url: str = ""
    handled: list[str] = field(default_factory=list)  # "METHOD path" of every handled request


@asynccontextmanager
async def _https_serving(cert: Any) -> AsyncIterator[TlsServer]:
    server = TlsServer()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    async def put_task(request: web.Request) -> web.Response:
        server.handled.append(f"PUT {request.path}")
        await request.read()
        return web.json_response({"id": request.match_info["task_id"]})

    async def list_tasks(request: web.Request) -> web.Response:
        server.handled.append(f"GET {request.path}")
        tasks = [{"id": "t1", "name": "one"}, {"id": "t2", "name": "two"}]
        return web.json_response({"count": 2, "tasks": tasks})

    app = web.Application()
    app.router.add_put("/v3/tasks/{task_id}", put_task)
    app.router.add_get("/v3/tasks", list_tasks)
    async with serving(app, ssl_context=context) as server.url:
        yield server


@contextmanager
def https_server(cert: Any) -> Iterator[TlsServer]:
    """An aiohttp HTTPS server on 127.0.0.1 presenting `cert`, in a background thread."""
    with in_thread(_https_serving(cert)) as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> Any:
    return trustme.CA()


@pytest.fixture
def ca_pem(ca: Any, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


batchsms = partial(processes.batchsms, text=True, env={"BATCHSMS_AUTH_TOKEN": TOKEN})


@pytest.fixture
def tls_cli(here: Here) -> Here:
    """`batchsms` in this process with the token; the default trust store is checked in a
    child (its environment is the point there)."""
    return partial(here, env={"BATCHSMS_AUTH_TOKEN": TOKEN})


def one_line(tmp_path: Path) -> Path:
    source = tmp_path / "in.jsonl"
    source.write_bytes(orjson.dumps({"task_id": "t1", "body": {"speed_limit": 100}}) + b"\n")
    return source


def run(tmp_path: Path, url: str, *extra: str, via: Here = batchsms,
        ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    out = tmp_path / "out.jsonl"
    out.unlink(missing_ok=True)
    result = via("run", str(one_line(tmp_path)), "--endpoint", url, "--out", str(out),
                      "--max-attempts", "2", "--rate", "0", "--log-format", "json", *extra,
                      cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    records = [orjson.loads(x) for x in out.read_bytes().splitlines()] if out.exists() else []
    return result, records


def test_self_signed_server_is_refused_by_default(ca: Any, tmp_path: Path) -> None:
    with https_server(ca.issue_cert("127.0.0.1", "localhost")) as server:
        result, records = run(tmp_path, server.url)
        handled = list(server.handled)
    assert result.returncode == 2, result.stderr  # never reached: the configuration (§7)
    assert len(records) == 1
    record = records[0]
    assert record["status"] == "failed"
    assert record["error_code"] == "connection"
    assert record["http_status"] is None
    assert "certificate" in record["error_msg"].lower(), record["error_msg"]
    assert handled == []  # nothing reached the handler


def test_self_signed_server_is_accepted_with_its_ca_bundle(ca: Any, ca_pem: Path,
                                                           tmp_path: Path, tls_cli: Here) -> None:
    with https_server(ca.issue_cert("127.0.0.1", "localhost")) as server:
        result, records = run(tmp_path, server.url, "--ca-bundle", str(ca_pem), via=tls_cli)
        localhost = server.url.replace("127.0.0.1", "localhost")
        result2, records2 = run(tmp_path, localhost, "--ca-bundle", str(ca_pem), via=tls_cli)
        handled = list(server.handled)
    assert result.returncode == 0, result.stderr
    assert [(r["status"], r["http_status"], r["attempts"]) for r in records] == \
        [("succeeded", 200, 1)]
    assert result2.returncode == 0, result2.stderr
    assert [r["status"] for r in records2] == ["succeeded"]
    assert handled == ["PUT /v3/tasks/t1", "PUT /v3/tasks/t1"]


def test_trusted_ca_but_wrong_host_name_is_refused(ca: Any, ca_pem: Path,
                                                   tmp_path: Path, tls_cli: Here) -> None:
    with https_server(ca.issue_cert("sms.example.org")) as server:
        result, records = run(tmp_path, server.url, "--ca-bundle", str(ca_pem), via=tls_cli)
        handled = list(server.handled)
    assert result.returncode == 2, result.stderr
    assert [(r["status"], r["error_code"]) for r in records] == [("failed", "connection")]
    msg = records[0]["error_msg"].lower()
    assert "certificate" in msg or "hostname" in msg, msg
    assert handled == []


def test_another_ca_is_not_trusted(ca: Any, tmp_path: Path, tls_cli: Here) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with https_server(ca.issue_cert("127.0.0.1")) as server:
        result, records = run(tmp_path, server.url, "--ca-bundle", str(other), via=tls_cli)
        handled = list(server.handled)
    assert result.returncode == 2, result.stderr
    assert [(r["status"], r["error_code"]) for r in records] == [("failed", "connection")]
    assert "certificate" in records[0]["error_msg"].lower()
    assert handled == []


@pytest.mark.parametrize("bundle", ["absent", "garbage", "directory"])
def test_unusable_ca_bundle_exits_2_with_one_line(ca: Any, tmp_path: Path,
                                                   bundle: str, tls_cli: Here) -> None:
    path = {"absent": tmp_path / "absent.pem", "garbage": tmp_path / "garbage.pem",
            "directory": tmp_path}[bundle]
    if bundle == "garbage":
        path.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                        "-----END CERTIFICATE-----\n")
    with https_server(ca.issue_cert("127.0.0.1")) as server:
        for args in (["run", str(one_line(tmp_path)), "--out", str(tmp_path / "o.jsonl")],
                     ["tasks"]):
            result = tls_cli(*args, "--endpoint", server.url, "--ca-bundle", str(path),
                              cwd=tmp_path)
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert result.stderr.startswith("batchsms: --ca-bundle"), result.stderr
        handled = list(server.handled)
    assert handled == []


def test_tasks_refuses_then_accepts_with_the_ca_bundle(ca: Any, ca_pem: Path,
                                                       tmp_path: Path, tls_cli: Here) -> None:
    with https_server(ca.issue_cert("127.0.0.1", "localhost")) as server:
        refused = tls_cli("tasks", "--endpoint", server.url, "--max-attempts", "2",
                           cwd=tmp_path)
        handled_before = list(server.handled)
        accepted = tls_cli("tasks", "--endpoint", server.url, "--ca-bundle", str(ca_pem),
                            cwd=tmp_path)
        handled = list(server.handled)
    assert refused.returncode == 3, refused.stderr  # as `run`: a certificate does not fix itself
    assert "Traceback" not in refused.stderr
    assert "certificate" in refused.stderr.lower(), refused.stderr
    assert refused.stdout == ""
    assert handled_before == []
    assert accepted.returncode == 0, accepted.stderr
    assert [orjson.loads(x) for x in accepted.stdout.splitlines()] == [
        {"task_id": "t1", "ref": "one"}, {"task_id": "t2", "ref": "two"}]
    assert handled == ["GET /v3/tasks"]


def test_untrusted_certificate_is_not_retried_and_stops_the_run(
        ca: Any, tmp_path: Path, tls_cli: Here) -> None:
    source = tmp_path / "many.jsonl"
    source.write_bytes(b"".join(orjson.dumps({"task_id": f"t{i}", "body": {"speed_limit": 1}})
                                + b"\n" for i in range(20)))
    out = tmp_path / "out.jsonl"
    with https_server(ca.issue_cert("127.0.0.1", "localhost")) as server:
        result = tls_cli("run", str(source), "--endpoint", server.url, "--out", str(out),
                          "--rate", "0", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 2, result.stderr  # before any answer: the configuration
    records = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert len(records) == 20
    tried = [r for r in records if r["status"] == "failed"]
    assert len(tried) == 1  # a certificate does not fix itself: the run stops at once
    # The handshake failed: no request left, so none is counted as an attempt (CONTRACT §10).
    assert {(r["attempts"], r["error_code"], r["maybe_applied"]) for r in tried} == \
        {(0, "connection", False)}
    assert {r["error_code"] for r in records if r["status"] == "skipped"} == {"aborted"}
    assert "--ca-bundle" in result.stderr
