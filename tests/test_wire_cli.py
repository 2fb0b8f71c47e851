"""`run` and `tasks` against servers that misbehave: the run survives, memory and outcomes stay
bounded, and the process makes sure it can hold its connections before it starts. Peak memory
and descriptor limits are a child's; the answers' effects are checked in this process."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from aiohttp import web

from tests import processes
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import InProcess, peak_rss_kib
from tests.servers import Hang, Seen, Server, app_server, raw_server, scripted_server

TOKEN = "wire-cli-token"


def batchsms(*args: str, cwd: Path, preexec_fn: Callable[[], None] | None = None,
             wrap_rss: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return processes.batchsms(*args, env={"BATCHSMS_AUTH_TOKEN": TOKEN}, cwd=cwd,
                              preexec_fn=preexec_fn, peak_rss=wrap_rss, timeout=timeout)


@pytest.fixture
def wire_cli(cli: InProcess) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """`batchsms` in this process with the token: what the answers do to outcomes and logs."""
    return partial(cli, env={"BATCHSMS_AUTH_TOKEN": TOKEN})


def lines(path: Path, n: int) -> Path:
    return write_jsonl(path, ({"task_id": f"t{i}", "body": {"speed_limit": i + 1}}
                              for i in range(n)))


def run_args(source: Path, url: str, *extra: str) -> list[str]:
    return ["run", str(source), "--endpoint", url, "--out", "out.jsonl", "--rate", "0",
            "--log-format", "json", "--no-progress", *extra]


def test_a_non_utf8_request_id_never_stops_the_run(tmp_path: Path,
        wire_cli: Callable[..., subprocess.CompletedProcess[bytes]]) -> None:
    """`X-Request-Id: \\xff` on 50 answers (half 200, half 404): 50 records, exit 1."""
    def answer(seen: Seen) -> bytes:
        status = b"200 OK" if int(seen.path.rsplit("t", 1)[1]) % 2 == 0 else b"404 Not Found"
        body = b'{"error_code": "SMS.1404", "error_msg": "no \xff task"}'
        return (b"HTTP/1.1 %s\r\nX-Request-Id: \xff\x1b]0;pwned\x07\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n%s" % (status, len(body), body))

    with raw_server(answer) as server:
        result = wire_cli(*run_args(lines(tmp_path / "in.jsonl", 50), server.url), cwd=tmp_path)
    assert result.returncode == 1, result.stderr.decode()[-2000:]
    assert b"Traceback" not in result.stderr
    assert b"\x1b" not in result.stderr
    found = read_jsonl(tmp_path / "out.jsonl")
    assert len(found) == 50
    assert sorted(r["status"] for r in found) == ["failed"] * 25 + ["succeeded"] * 25
    assert {r["request_id"] for r in found} == {"\ufffd\\x1b]0;pwned\\x07"}
    assert {r["http_status"] for r in found if r["status"] == "failed"} == {404}


async def _gigabyte(request: web.Request, _: Server) -> web.StreamResponse:
    resp = web.StreamResponse(status=200)
    resp.enable_chunked_encoding()  # no Content-Length: the client must stop reading itself
    await resp.prepare(request)
    block = b" " * (1 << 20)
    try:
        for _ in range(1024):  # 1 GiB, generated as it goes, never held
            await resp.write(block)
    except (ConnectionError, RuntimeError):
        pass  # the client hung up, as it should
    return resp


def test_a_gigabyte_answer_is_not_read_into_memory(tmp_path: Path) -> None:
    with app_server(_gigabyte) as server:
        result = batchsms(*run_args(lines(tmp_path / "in.jsonl", 3), server.url),
                          cwd=tmp_path, wrap_rss=True)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert [r["status"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["succeeded"] * 3
    peak_kib = peak_rss_kib(result)
    assert peak_kib < 300 * 1024, f"peak RSS {peak_kib // 1024} MiB"


def test_a_megabyte_error_message_is_cut_in_outcomes_and_logs(tmp_path: Path,
        wire_cli: Callable[..., subprocess.CompletedProcess[bytes]]) -> None:
    async def answer(_: web.Request, __: Server) -> web.StreamResponse:
        return web.json_response({"error_code": "SMS.1400", "error_msg": "x" * 1_000_000},
                                 status=400)

    with app_server(answer) as server:
        result = wire_cli(*run_args(lines(tmp_path / "in.jsonl", 5), server.url), cwd=tmp_path)
        listed = wire_cli("tasks", "--endpoint", server.url, cwd=tmp_path)
    assert result.returncode == 1, result.stderr.decode()[-2000:]
    for record in read_jsonl(tmp_path / "out.jsonl"):
        assert record["error_code"] == "SMS.1400"
        assert record["error_msg"] == "x" * 1000 + "… (cut, 999000 more)"
    assert (tmp_path / "out.jsonl").stat().st_size < 5 * 2000
    assert len(result.stderr) < 5 * 2000 + 5000
    assert listed.returncode == 1
    assert b"(cut, 999000 more)" in listed.stderr
    assert len(listed.stderr) < 3000


def test_an_unparseable_answer_is_said_in_words(tmp_path: Path,
        wire_cli: Callable[..., subprocess.CompletedProcess[bytes]]) -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 9000 + b"\r\nContent-Length: 0\r\n\r\n"
    with raw_server(raw) as server:
        result = wire_cli(*run_args(lines(tmp_path / "in.jsonl", 1), server.url,
                                    "--max-attempts", "2"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr.decode()[-2000:]
    [record] = read_jsonl(tmp_path / "out.jsonl")
    assert record["http_status"] is None
    assert record["error_code"] == "connection"
    assert record["error_msg"] == ("the answer had a header or status line larger than 8 KiB; "
                                   "the update may have been applied")
    assert server.count("PUT") == 2


def _limit_descriptors(soft: int, hard: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return apply


def test_a_concurrency_the_process_cannot_hold_is_refused(tmp_path: Path) -> None:
    result = batchsms(*run_args(lines(tmp_path / "in.jsonl", 3), "http://127.0.0.1:9",
                                "--concurrency", "5000"),
                      cwd=tmp_path, preexec_fn=_limit_descriptors(256, 256))
    assert result.returncode == 2, result.stderr.decode()[-2000:]
    message = result.stderr.decode()
    assert len(message.strip().splitlines()) == 1
    for number in ("--concurrency 5000", "5064", "at most 256", "hard limit 256", "to 192"):
        assert number in message
    assert not (tmp_path / "out.jsonl").exists()


def test_the_soft_descriptor_limit_is_raised_when_the_hard_one_allows(tmp_path: Path) -> None:
    """Soft 128, hard 4096, 300 lines held 1 s each with --concurrency 400: without the raise,
    connections past ~120 fail with EMFILE; with it, more than 128 are in flight at once."""
    with scripted_server(Hang(1.0)) as server:
        result = batchsms(*run_args(lines(tmp_path / "in.jsonl", 300), server.url,
                                    "--concurrency", "400"),
                          cwd=tmp_path, preexec_fn=_limit_descriptors(128, 4096))
        in_flight = server.max_in_flight
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"descriptors.raised" in result.stderr
    assert in_flight > 128
    assert all(r["attempts"] == 1 for r in read_jsonl(tmp_path / "out.jsonl"))
