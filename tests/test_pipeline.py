"""`run` end to end against a scripted loopback server: retries, attempts, order, stops."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from batchsms.commands.config import RunConfig
from batchsms.commands.run import run
from tests.jsonl import write_jsonl
from tests.servers import RESET, Answer, Hang, ScriptedServer, scripted_server

TOKEN_ENV = {"BATCHSMS_AUTH_TOKEN": "test-token-value"}


def run_lines(tmp_path: Path, server: ScriptedServer, lines: list[dict[str, Any]],
              **options: Any) -> tuple[int, list[dict[str, Any]]]:
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    out = tmp_path / "out.jsonl"
    options.setdefault("rate", 0)
    options.setdefault("progress", False)
    config = RunConfig(input=str(source), out=out, endpoint=server.url, **options)
    with capture_logs():
        code = run(config, env=TOKEN_ENV, stderr=io.StringIO())
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    return code, records


def by_line(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    result = {r["line"]: r for r in records}
    assert len(result) == len(records), "more than one outcome for a line"
    return result


def speed(task_id: str, value: int = 100) -> dict[str, Any]:
    return {"task_id": task_id, "body": {"speed_limit": value}}


def test_5xx_then_success_counts_every_attempt(tmp_path: Path, scripted: ScriptedServer) -> None:
    scripted.script("t1", Answer(503), Answer(500), Answer(502))
    scripted.script("t2", Answer(504))
    code, records = run_lines(tmp_path, scripted, [speed("t1"), speed("t2")])
    outcomes = by_line(records)
    assert code == 0
    assert outcomes[1]["status"] == "succeeded"
    assert outcomes[1]["attempts"] == 4 == scripted.count("t1")
    assert outcomes[2]["attempts"] == 2 == scripted.count("t2")
    assert outcomes[1]["http_status"] == 200
    assert outcomes[1]["request_id"] is not None
    assert outcomes[1]["error_code"] is None


def test_client_errors_are_not_retried(tmp_path: Path, scripted: ScriptedServer) -> None:
    scripted.script("bad", Answer(400, body={"error_code": "SMS.0201", "error_msg": "bad"}))
    scripted.script("gone", Answer(404))
    code, records = run_lines(tmp_path, scripted, [speed("bad"), speed("gone"), speed("ok")])
    outcomes = by_line(records)
    assert code == 1
    assert outcomes[1] | {"finished_at": None, "run_id": None, "elapsed_ms": None} == {
        "run_id": None, "line": 1, "task_id": "bad", "op": "update", "ref": None,
        "status": "failed",
        "http_status": 400, "attempts": 1, "error_code": "SMS.0201", "error_msg": "bad",
        "errors": [], "request_id": "req-1", "elapsed_ms": None, "finished_at": None,
        "body_sha256": outcomes[1]["body_sha256"], "maybe_applied": False}
    assert outcomes[2]["attempts"] == 1 == scripted.count("gone")
    assert outcomes[2]["error_code"] == "SMS.404"


def test_retry_after_is_a_lower_bound(tmp_path: Path, scripted: ScriptedServer) -> None:
    scripted.script("t", Answer(429, headers={"Retry-After": "1"},
                              body={"error_code": "APIG.0308", "error_msg": "throttled"}))
    code, records = run_lines(tmp_path, scripted, [speed("t")])
    assert code == 0
    assert records[0]["attempts"] == 2
    first, second = scripted.received
    assert second.start - first.end >= 0.95


def test_429_without_retry_after_recovers(tmp_path: Path, scripted: ScriptedServer) -> None:
    scripted.script("t", Answer(429), Answer(429))
    code, records = run_lines(tmp_path, scripted, [speed("t")])
    assert code == 0
    assert records[0]["attempts"] == 3 == scripted.count("t")


def test_resets_and_timeouts_are_retried_and_counted(tmp_path: Path,
                                                     scripted: ScriptedServer) -> None:
    scripted.script("reset", RESET, RESET)
    scripted.script("slow", Hang(2.0))
    code, records = run_lines(tmp_path, scripted, [speed("reset"), speed("slow")],
                              timeout=0.5)
    outcomes = by_line(records)
    assert code == 0
    assert outcomes[1]["attempts"] == 3 == scripted.count("reset")
    assert outcomes[2]["attempts"] == 2 == scripted.count("slow")


def test_attempt_budget_exhausted(tmp_path: Path, scripted: ScriptedServer) -> None:
    scripted.script("t", *[Answer(503)] * 10)
    code, records = run_lines(tmp_path, scripted, [speed("t")], max_attempts=3)
    assert code == 1
    assert records[0]["status"] == "failed"
    assert records[0]["attempts"] == 3 == scripted.count("t")
    assert records[0]["error_code"] == "SMS.503"
    assert records[0]["http_status"] == 503


def test_no_silent_resend_when_kept_alive_connection_drops(tmp_path: Path,
                                                           scripted: ScriptedServer) -> None:
    # The reset arrives on a connection kept alive from an earlier request: aiohttp would re-send
    # a PUT on its own unless switched off. Server count must equal the attempts we report.
    scripted.script("b", RESET)
    code, records = run_lines(tmp_path, scripted, [speed("a"), speed("b")], concurrency=1)
    outcomes = by_line(records)
    assert code == 0
    assert outcomes[2]["attempts"] == 2 == scripted.count("b")


def test_same_task_never_in_flight_twice_and_in_file_order(tmp_path: Path) -> None:
    lines = [speed(f"t{i % 3}", i) for i in range(30)]
    with scripted_server(Answer()) as server:
        for i in range(3):
            server.script(f"t{i}", *[Hang(0.02)] * 10)
        code, _ = run_lines(tmp_path, server, lines, concurrency=8)
        assert code == 0
        for task in ("t0", "t1", "t2"):
            seen = [r for r in server.received if r.task_id == task]
            sent = [orjson.loads(r.body)["speed_limit"] for r in seen]
            assert sent == [i for i in range(30) if i % 3 == int(task[1])]
            for before, after in itertools.pairwise(seen):
                assert after.start >= before.end
        assert server.max_in_flight > 1  # different tasks did run together


def test_slow_start_then_concurrency(tmp_path: Path) -> None:
    lines = [speed(f"t{i}") for i in range(40)]
    with scripted_server(Hang(0.05)) as server:
        code, _ = run_lines(tmp_path, server, lines, concurrency=8)
        assert code == 0
        first, second = sorted(server.received, key=lambda r: r.start)[:2]
        assert second.start >= first.end  # one request alone until the first answer
        assert server.max_in_flight > 1


def test_wrong_credentials_cost_three_requests(tmp_path: Path) -> None:
    lines = [speed(f"t{i}") for i in range(500)]
    with scripted_server(Answer(401, body={"error_code": "APIG.0301",
                                           "error_msg": "Incorrect IAM authentication"})) as server:
        code, records = run_lines(tmp_path, server, lines, concurrency=16)
        assert code == 3
        assert len(server.received) == 3
        assert server.max_in_flight == 1
        outcomes = by_line(records)
        assert len(outcomes) == 500
        assert [outcomes[i]["status"] for i in (1, 2, 3)] == ["failed"] * 3
        assert outcomes[1]["error_code"] == "APIG.0301"
        skipped = [r for r in records if r["status"] == "skipped"]
        assert len(skipped) == 497
        assert {r["error_code"] for r in skipped} == {"aborted"}
        assert all(r["attempts"] == 0 for r in skipped)


def test_failure_ratio_aborts_and_accounts_for_every_line(tmp_path: Path) -> None:
    lines = [speed(f"t{i}") for i in range(1000)]
    with scripted_server(Answer(404)) as server:
        code, records = run_lines(tmp_path, server, lines, concurrency=4,
                                  abort_failure_ratio=0.5)
        assert code == 3
        outcomes = by_line(records)
        assert len(outcomes) == 1000
        sent = [r for r in records if r["attempts"] > 0]
        assert 100 <= len(sent) < 120  # stopped soon after the 100th finished line
        assert len(server.received) == len(sent)
        assert {r["status"] for r in records if r["attempts"] == 0} == {"skipped"}


def test_deadline_skips_the_rest(tmp_path: Path) -> None:
    lines = [speed(f"t{i}") for i in range(50)]
    with scripted_server(Hang(0.05)) as server:
        code, records = run_lines(tmp_path, server, lines, concurrency=2, rate=20,
                                  deadline=time.time() + 0.5)
        assert code == 1
        outcomes = by_line(records)
        assert len(outcomes) == 50
        skipped = [r for r in records if r["status"] == "skipped"]
        assert skipped
        assert {r["error_code"] for r in skipped} == {"deadline"}
        assert len(server.received) == sum(r["attempts"] for r in records)
        assert max(r.start for r in server.received) <= server.received[0].start + 0.7


def test_invalid_lines_are_recorded_and_not_sent(tmp_path: Path, scripted: ScriptedServer) -> None:
    lines = [speed("ok"), {"task_id": "typo", "body": {"speedlimit": 1}},
             {"task_id": "x", "body": {}}]
    code, records = run_lines(tmp_path, scripted, lines)
    outcomes = by_line(records)
    assert code == 1
    assert outcomes[2]["status"] == "invalid"
    assert outcomes[2]["errors"][0]["path"] == "body.speedlimit"
    assert outcomes[3]["errors"][0]["message"].startswith("nothing to update")
    assert [r.task_id for r in scripted.received] == ["ok"]


def test_body_bytes_are_canonical_and_hashed(tmp_path: Path, scripted: ScriptedServer) -> None:
    import hashlib

    line = {"task_id": "a/b c", "body": {"speed_limit": 5, "name": "迁移-1", "clone_server": None}}
    code, records = run_lines(tmp_path, scripted, [line])
    assert code == 0
    sent = scripted.received[0]
    assert sent.body == '{"name":"迁移-1","speed_limit":5}'.encode()
    assert records[0]["body_sha256"] == hashlib.sha256(sent.body).hexdigest()
    assert sent.raw_path == "/v3/tasks/a%2Fb%20c"
    assert sent.headers["X-Auth-Token"] == "test-token-value"
    assert sent.headers["User-Agent"].startswith("batchsms/")


def test_rate_limit_holds_at_the_server(tmp_path: Path, scripted: ScriptedServer) -> None:
    lines = [speed(f"t{i}") for i in range(30)]
    code, _ = run_lines(tmp_path, scripted, lines, rate=20, burst=1, concurrency=8)
    assert code == 0
    starts = sorted(r.start for r in scripted.received)
    for i, start in enumerate(starts):
        window = [s for s in starts[i:] if s - start < 0.5]
        assert len(window) <= 20 * 0.5 + 1 + 1  # rate*t + burst, +1 for clock skew


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_reset_after_success(tmp_path: Path, status: int,
                                           scripted: ScriptedServer) -> None:
    scripted.script("a", Answer(status))
    scripted.script("b", Answer(status))
    code, records = run_lines(tmp_path, scripted, [speed("a"), speed("b"), speed("c"),
                                                 speed("d")], concurrency=1)
    assert code == 1
    assert [r["status"] for r in sorted(records, key=lambda r: r["line"])] == [
        "failed", "failed", "succeeded", "succeeded"]


def test_log_events_name_each_notable_step(tmp_path: Path, scripted: ScriptedServer) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [speed("r"), speed("f")])
    scripted.script("r", Answer(503))
    scripted.script("f", Answer(404))
    with capture_logs() as logs:
        code = run(RunConfig(input=str(source), out=tmp_path / "o.jsonl",
                             endpoint=scripted.url, rate=0, progress=False),
                   env=TOKEN_ENV, stderr=io.StringIO())
    assert code == 1
    events = [e["event"] for e in logs]
    assert events[0] == "run.started"
    assert events[-1] == "run.finished"
    retry = next(e for e in logs if e["event"] == "task.retry")
    assert (retry["task_id"], retry["attempt"], retry["http_status"]) == ("r", 1, 503)
    failed = next(e for e in logs if e["event"] == "task.failed")
    assert (failed["task_id"], failed["error_code"]) == ("f", "SMS.404")
    finished = logs[-1]
    assert (finished["succeeded"], finished["failed"], finished["requests"]) == (1, 1, 3)


def test_abort_is_logged(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [speed(f"t{i}") for i in range(5)])
    with scripted_server(Answer(403)) as server, capture_logs() as logs:
        code = run(RunConfig(input=str(source), out=tmp_path / "o.jsonl", endpoint=server.url,
                             rate=0, progress=False), env=TOKEN_ENV, stderr=io.StringIO())
    assert code == 3
    aborted = [e for e in logs if e["event"] == "run.aborted"]
    assert len(aborted) == 1
    assert "403" in aborted[0]["reason"]


def test_adaptive_rate_backs_off_when_the_service_throttles(tmp_path: Path) -> None:
    from batchsms.simulator.faults import FaultConfig
    from batchsms.simulator.threaded import simulator_in_thread

    lines = [speed(f"a{i}") for i in range(150)]
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    with simulator_in_thread(FaultConfig(throttle_rate=30, seed=1)) as sim, capture_logs():
        code = run(RunConfig(input=str(source), out=tmp_path / "o.jsonl", endpoint=sim.url,
                             rate=200, burst=5, concurrency=16, max_attempts=10,
                             progress=False), env=TOKEN_ENV, stderr=io.StringIO())
        throttled = sim.stats.by_status.get(429, 0)
        received = sim.stats.received
    assert code == 0
    # With the rate fixed at 200/s (and only backoff to slow it) ~25-35% of requests are
    # refused. The controller cuts to just under the window's 30/s at once; the window then
    # refuses everything until its first second has passed (~25 429s in this 5 s run), and
    # almost nothing after: measured 15% here, 2-4% over 1 000 lines (bench_throttle.py).
    assert throttled / received < 0.2, (throttled, received)


# --- one attempt engine: what each try says, what counts as an attempt ------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_refused_connections_before_any_answer_stop_the_run(tmp_path: Path) -> None:
    """Nothing listens: before any answer came, a refused connection is the configuration,
    not an outage (issue 23): the run stops at once, exit 2, the try not counted as an attempt.
    (After an answer, refused tries are retried and not counted: test_engine.py.)"""
    source = write_jsonl(tmp_path / "in.jsonl", [speed("t"), speed("u")])
    out = tmp_path / "o.jsonl"
    with capture_logs():
        code = run(RunConfig(input=str(source), out=out, rate=0, max_attempts=1,
                             endpoint=f"http://127.0.0.1:{free_port()}", progress=False),
                   env=TOKEN_ENV, stderr=io.StringIO())
    assert code == 2
    first, second = (orjson.loads(x) for x in out.read_bytes().splitlines())
    assert (first["status"], first["error_code"], first["attempts"]) == ("failed", "connection", 0)
    assert first["maybe_applied"] is False
    assert (second["status"], second["error_code"]) == ("skipped", "aborted")


def test_a_request_dropped_after_sending_counts_and_may_be_applied(
        tmp_path: Path, scripted: ScriptedServer) -> None:
    """The server reads the PUT then closes: each such try is an attempt, and the line's
    outcome says the update may have been applied."""
    scripted.script("t", RESET, RESET)
    scripted.script("u", RESET, Answer(404))
    code, records = run_lines(tmp_path, scripted, [speed("t"), speed("u")], max_attempts=2)
    outcomes = by_line(records)
    assert code == 1
    assert (outcomes[1]["status"], outcomes[1]["error_code"]) == ("failed", "connection")
    assert outcomes[1]["attempts"] == 2 == scripted.count("t")
    assert outcomes[1]["maybe_applied"] is True
    assert outcomes[2]["attempts"] == 2 == scripted.count("u")
    assert outcomes[2]["maybe_applied"] is True  # the first PUT may have been applied


@pytest.mark.parametrize(("lines", "attempts", "seed", "throttles"), [
    (200, 3, 1, False),  # a seed whose exhausted lines end on each kind of failure
    pytest.param(600, 5, 9, True, marks=pytest.mark.slow),  # issue 9's done-when, as written
])
def test_line_mix_every_line_gets_its_planned_attempts(tmp_path: Path, lines: int,
                                                       attempts: int, seed: int,
                                                       throttles: bool) -> None:
    """Issue 9's done-when: ~40% of the lines get 1 to `attempts` failures (5xx, 429, reset,
    hang) first, at --rate 0 --max-attempts `attempts`; every outcome and attempt count matches
    the plan. The default suite runs 200 lines with 3 attempts (its backoffs are shorter: a
    line failing 4 times waits up to 7.5 s), `-m slow` the 600 lines with 5.

    The default run leaves 429 out of the mix (429s are counted as attempts like any other
    answer: `test_retry_after_is_a_lower_bound`). With them, on a machine slow enough that the
    first 429s came while slow start had the send rate at ~3/s (CI's coverage run), the pace
    was cut to ~1/s and the run took minutes: rate-independent 429s still slow the engine down,
    which is the pace issue's to fix (its item 2), not this test's to wait out."""
    import random

    rng = random.Random(seed)
    kinds: list[Any] = [Answer(503), Answer(500), Answer(502), Answer(504),
                        *([Answer(429)] if throttles else []), RESET, Hang(3.0)]
    plans: dict[str, list[Any]] = {}
    for i in range(lines):
        plans[f"m{i}"] = [rng.choice(kinds) for _ in range(rng.randint(1, attempts))] \
            if rng.random() < 0.4 else []
    with scripted_server() as server:
        for task, plan in plans.items():
            server.script(task, *plan)
        code, records = run_lines(tmp_path, server, [speed(t) for t in plans],
                                  max_attempts=attempts, timeout=1.5)  # a plain answer
        # took more than 0.5 s on a machine at load 14: a timeout and a second attempt
        outcomes = {r["task_id"]: r for r in records}
        assert len(records) == lines == len(outcomes)
        for task, plan in plans.items():
            record = outcomes[task]
            assert record["attempts"] == server.count(task), task
            if len(plan) < attempts:
                assert (record["status"], record["attempts"]) == ("succeeded", len(plan) + 1)
            else:
                assert (record["status"], record["attempts"]) == ("failed", attempts), task
                last = plan[-1]
                expected = "timeout" if isinstance(last, Hang) else \
                    "connection" if last == RESET else f"SMS.{last.status}"
                assert record["error_code"] == expected
                assert record["maybe_applied"] == any(
                    isinstance(a, Hang) or a == RESET for a in plan)
    exhausted = [p[-1] for p in plans.values() if len(p) == attempts]
    assert sum(1 for p in plans.values() if p) > lines // 3
    assert {type(a) for a in exhausted} >= {Answer, Hang}
    assert RESET in exhausted
    assert code == (0 if not exhausted else 1)
