"""Regressions found by the bad-input corpus, the fuzzers and the secrecy suite."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
import structlog

from batchsms import logs
from batchsms.credentials import AkSkCredentials
from batchsms.records import MAX_LINE_BYTES, Line, read_lines
from batchsms.signing import Signer
from tests.test_bad_input import batchsms, good, lines

BOM = b"\xef\xbb\xbf"


def test_bom_before_a_first_line_at_the_limit_keeps_it_whole_and_numbers_right() -> None:
    head = orjson.dumps({"task_id": "pad", "body": {"speed_limit": 7}})
    second = orjson.dumps({"task_id": "t2", "body": {"speed_limit": 2}})
    for size in (MAX_LINE_BYTES - 1, MAX_LINE_BYTES):  # both within the limit
        first = head[:-1] + b" " * (size - len(head)) + b"}"
        items = list(read_lines(io.BytesIO(BOM + first + b"\n" + second + b"\n")))
        assert items == [Line(1, "pad", None, {"speed_limit": 7}),
                         Line(2, "t2", None, {"speed_limit": 2})], [i[:3] for i in items]
    over = head[:-1] + b" " * (MAX_LINE_BYTES + 1 - len(head)) + b"}"
    items = list(read_lines(io.BytesIO(BOM + over + b"\n" + second + b"\n")))
    assert [i.number for i in items] == [1, 2]
    assert "longer than the limit" in items[0].errors[0].message  # type: ignore[union-attr]


@pytest.mark.parametrize("problem", ["input is a directory", "bad --ca-bundle"])
def test_could_not_start_leaves_no_outcomes_file(tmp_path: Path, problem: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(lines(good(1)))
    out = tmp_path / "o.jsonl"
    args = (["run", str(tmp_path), "--simulate"] if problem == "input is a directory" else
            ["run", str(source), "--simulate", "--ca-bundle", str(tmp_path / "absent.pem")])
    result = batchsms(*args, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2
    assert not out.exists()  # exit 2 = could not start: nothing created


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_an_exception_logged_with_exc_info_shows_no_local_secret(fmt: str) -> None:
    secret = "SKsecret-in-a-local-variable"
    buf = io.StringIO()
    logs.configure(fmt, buf)

    def sign(sk: str) -> None:
        signer = Signer(AkSkCredentials("AK", sk))  # noqa: F841 - a frame holding the secret
        raise ConnectionError("boom")

    try:
        sign(secret)
    except ConnectionError:
        structlog.get_logger("t").error("task.crashed", exc_info=True)
    assert "boom" in buf.getvalue()
    assert secret not in buf.getvalue()


def test_report_counts_an_invalid_line_whose_record_is_over_1_mib(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    # a bad enum value is quoted in its message: the outcome record is over 1 MiB
    source.write_bytes(lines(good(1), orjson.dumps(
        {"task_id": "e", "body": {"type": "x" * (1024 * 1024 - 100)}})))
    out = tmp_path / "r.jsonl"
    assert batchsms("run", str(source), "--simulate", "--rate", "0", "--out", str(out),
                    cwd=tmp_path).returncode == 1
    report = batchsms("report", str(out), "--json", cwd=tmp_path)
    figures = orjson.loads(report.stdout)
    assert figures["cut_lines"] == 0, figures
    assert figures["lines"] == 2, figures
    assert figures["not_done"] == 1, figures
    assert report.returncode == 1


def test_simulate_refuses_broken_credentials(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(lines(good(1)))
    result = batchsms("run", str(source), "--simulate", "--token-file", str(tmp_path / "none"),
                      "--out", str(tmp_path / "o.jsonl"), cwd=tmp_path)
    assert result.returncode == 2
    assert b"--token-file" in result.stderr


def test_integer_beyond_64_bits_is_named_as_such() -> None:
    from batchsms.records import parse_line
    from batchsms.schema import validate

    line = parse_line(1, b'{"task_id": "t", "body": {"target_server": {"memory": '
                         b'18446744073709551616}}}')
    assert isinstance(line, Line)
    _, problems = validate(line.body)
    assert problems[0].path == "body.target_server.memory"
    assert "outside the 64-bit range" in problems[0].message
    _, problems = validate({"speed_limit": 1.5})
    assert "fraction or exponent" in problems[0].message


def test_logs_follow_sys_stderr_so_the_progress_bar_can_route_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """rich replaces sys.stderr while the bar is shown; log lines must go through it."""
    logs.configure("json")
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    structlog.get_logger("t").info("run.started", run_id="x")
    assert '"event": "run.started"' in later.getvalue()


def test_validate_and_run_describe_an_invalid_line_the_same_way(tmp_path: Path) -> None:
    """One record for an invalid line, whichever command writes it: first problem, and N more."""
    source = tmp_path / "in.jsonl"
    source.write_bytes(lines(orjson.dumps(  # (a valid line too: an all-invalid file is refused)
        {"task_id": "t", "body": {"speedlimit": 1, "type": "x", "state": "RUNNING"}}),
        orjson.dumps({"task_id": "ok", "body": {"speed_limit": 1}})))
    assert batchsms("validate", str(source), "--out", str(tmp_path / "v.jsonl"),
                    cwd=tmp_path).returncode == 1
    assert batchsms("run", str(source), "--simulate", "--out", str(tmp_path / "r.jsonl"),
                    cwd=tmp_path).returncode == 1
    (valid,) = [r for x in (tmp_path / "v.jsonl").read_bytes().splitlines()
                if (r := orjson.loads(x))["line"] == 1]
    (ran,) = [r for x in (tmp_path / "r.jsonl").read_bytes().splitlines()
              if (r := orjson.loads(x))["line"] == 1]
    assert valid["error_msg"] == ran["error_msg"]
    assert ran["error_msg"].startswith("body.speedlimit: unknown field")
    assert ran["error_msg"].endswith("(and 2 more)")
    assert valid["errors"] == ran["errors"]
