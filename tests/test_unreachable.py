"""An endpoint that cannot be reached before any answer came is a configuration problem
(issue 23 item 1): a name that does not resolve, a refused connection, an untrusted TLS
certificate stop the run at once with exit 2 and one line naming the endpoint and the cause,
instead of waiting out `--max-outage` as an outage; every line still gets its record, and
`run.started` names the endpoint, the input, `--out` and the credential source."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import Here

TOKEN = "unreachable-test-token-0123"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _events(stderr: str) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in stderr.splitlines() if x.startswith("{")]


def _run(here: Here, tmp_path: Path, url: str, *extra: str) -> tuple[Any, list[dict[str, Any]]]:
    source = write_jsonl(tmp_path / "in.jsonl", ({"task_id": f"t{i}", "body": {"speed_limit": 1}}
                                                 for i in range(30)))
    out = tmp_path / "out.jsonl"
    started = time.monotonic()
    result = here("run", str(source), "--endpoint", url, "--out", str(out), "--rate", "0",
                  "--max-outage", "60", *extra, env={"BATCHSMS_AUTH_TOKEN": TOKEN},
                  cwd=tmp_path)
    assert time.monotonic() - started < 30, "waited as for an outage"
    assert "Traceback" not in result.stderr, result.stderr
    assert TOKEN not in result.stderr
    return result, read_jsonl(out)


def _check_records(records: list[dict[str, Any]], cause: str) -> None:
    assert sorted(r["line"] for r in records) == list(range(1, 31))  # every line accounted for
    failed = [r for r in records if r["status"] == "failed"]
    assert [(r["error_code"], r["attempts"]) for r in failed] == [("connection", 0)]
    assert cause in failed[0]["error_msg"].lower()
    assert {r["error_code"] for r in records if r["status"] == "skipped"} == {"aborted"}


@pytest.mark.parametrize("kind", ["refused", "unresolved"])
def test_refused_or_unresolved_endpoint_exits_2_at_once(kind: str, here: Here,
                                                        tmp_path: Path) -> None:
    if kind == "refused":
        port = _closed_port()
        url, where, cause = f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", "refused"
    else:
        url, where, cause = "https://sms.nowhere.invalid", "sms.nowhere.invalid", "resolved"
    result, records = _run(here, tmp_path, url, "--log-format", "json")
    assert result.returncode == 2, result.stderr
    _check_records(records, cause)
    events = _events(result.stderr)
    started = next(e for e in events if e["event"] == "run.started")
    assert started["endpoint"] == url
    assert started["input"].endswith("in.jsonl")
    assert started["out"].endswith("out.jsonl")
    assert started["credentials"] == "BATCHSMS_AUTH_TOKEN"
    assert started["proxy"] == "none (direct)"  # what the chain resolved, as check shows it
    assert "project" in started
    aborted = [e for e in events if e["event"] == "run.aborted"]
    assert len(aborted) == 1
    assert where in aborted[0]["reason"]
    assert "not an outage" in aborted[0]["reason"]
    assert not [e for e in events if e["event"] == "task.retry"]


def test_console_says_so_in_one_line(here: Here, tmp_path: Path) -> None:
    port = _closed_port()
    result, _ = _run(here, tmp_path, f"http://127.0.0.1:{port}", "--log-format", "console")
    assert result.returncode == 2, result.stderr
    said = [x for x in result.stderr.splitlines() if "not an outage" in x]
    assert said
    assert f"127.0.0.1:{port}" in said[0]


def test_untrusted_certificate_exits_2_at_once(here: Here, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    from tests.test_tls import https_server

    with https_server(trustme.CA().issue_cert("127.0.0.1", "localhost")) as server:
        result, records = _run(here, tmp_path, server.url, "--log-format", "json")
        handled = list(server.handled)
    assert result.returncode == 2, result.stderr
    assert handled == []
    _check_records(records, "certificate")
    aborted = [e for e in _events(result.stderr) if e["event"] == "run.aborted"]
    assert "--ca-bundle" in aborted[0]["reason"]
