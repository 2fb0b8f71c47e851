"""An empty input is not a success (issue 23 item 3): a nightly job whose generator produced
nothing must not look healthy. `run` refuses it (exit 2, one line, no `--out`, the metrics file
says exit 2 and keeps the last success where it was) unless `--allow-empty` (exit 0)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from batchsms.commands.metrics import previous_last_success
from tests.processes import Here


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_an_empty_file_is_refused_with_exit_2(content: str, here: Here, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(content)
    metrics = tmp_path / "batchsms.prom"
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--metrics-file", str(metrics), "--log-format", "console", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "--allow-empty" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
    assert 'batchsms_run_exit_code{batch="batchsms"} 2.0' in metrics.read_text()
    assert not previous_last_success(metrics)


def test_allow_empty_makes_it_a_success(here: Here, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("")
    metrics = tmp_path / "batchsms.prom"
    result = here("run", str(source), "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--metrics-file", str(metrics), "--allow-empty", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert previous_last_success(metrics)


def test_an_empty_stream_is_refused_too(here: Here, tmp_path: Path) -> None:
    metrics = tmp_path / "batchsms.prom"
    result = here("run", "-", "--simulate", "--out", str(tmp_path / "out.jsonl"),
                  "--metrics-file", str(metrics), "--log-format", "json", input="",
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    events = [orjson.loads(x) for x in result.stderr.splitlines()]
    refused = [e for e in events if e["event"] == "run.refused"]
    assert len(refused) == 1
    assert "--allow-empty" in refused[0]["error"]
    assert not previous_last_success(metrics)
    allowed = here("run", "-", "--simulate", "--out", str(tmp_path / "out.jsonl"),
                   "--allow-empty", input="", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
