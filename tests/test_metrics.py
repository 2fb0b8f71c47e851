"""`--metrics-file`: Prometheus text read back with its parser, last success kept, atomic writes."""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchsms.commands.metrics import previous_last_success, write_metrics
from batchsms.commands.outputs import check_output
from batchsms.engine.stats import RunStats
from batchsms.errors import UsageError

T1, T2 = 1_714_560_000.25, 1_714_646_400.5


def stats(*, failed: int = 0) -> RunStats:
    run = RunStats(by_status=Counter(succeeded=5, failed=failed),
                   by_error=Counter({"SMS.6003": failed}) if failed else Counter(),
                   by_http=Counter({200: 5, 404: failed, 429: 2}), requests=7 + failed,
                   retries=2)
    run.finished = run.started + 12.5
    return run


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge"
        for s in family.samples:
            found[s.name, tuple(sorted(s.labels.items()))] = s.value
    return found


def test_metrics_parse_back(tmp_path: Path) -> None:
    """Every documented metric is there with the run's values, labelled with the batch."""
    path = tmp_path / "nightly.prom"
    write_metrics(path, stats(failed=1), 1, T1)
    b = (("batch", "nightly"),)
    assert samples(path) == {
        ("batchsms_lines", (*b, ("status", "succeeded"))): 5,
        ("batchsms_lines", (*b, ("status", "failed"))): 1,
        ("batchsms_lines", (*b, ("status", "invalid"))): 0,
        ("batchsms_lines", (*b, ("status", "skipped"))): 0,
        ("batchsms_errors", (*b, ("code", "SMS.6003"))): 1,
        ("batchsms_http_responses", (*b, ("code", "200"))): 5,
        ("batchsms_http_responses", (*b, ("code", "404"))): 1,
        ("batchsms_http_responses", (*b, ("code", "429"))): 2,
        ("batchsms_requests", b): 8,
        ("batchsms_retries", b): 2,
        ("batchsms_run_duration_seconds", b): 12.5,
        ("batchsms_run_exit_code", b): 1,
        ("batchsms_last_run_timestamp_seconds", b): T1,
        ("batchsms_last_success_timestamp_seconds", b): 0,
    }


def test_success_sets_last_success(tmp_path: Path) -> None:
    """A run that exits 0 is the last success."""
    path = tmp_path / "nightly.prom"
    write_metrics(path, stats(), 0, T1)
    assert previous_last_success(path) == T1
    assert samples(path)["batchsms_run_exit_code", (("batch", "nightly"),)] == 0


def test_last_success_carried_over_a_failed_run(tmp_path: Path) -> None:
    """A failed night keeps the previous success time, so a 48 h alert sees the gap."""
    path = tmp_path / "nightly.prom"
    write_metrics(path, stats(), 0, T1)
    write_metrics(path, stats(failed=3), 1, T2)
    write_metrics(path, stats(), 143, T2 + 60)
    found = samples(path)
    b = (("batch", "nightly"),)
    assert found["batchsms_last_success_timestamp_seconds", b] == T1
    assert found["batchsms_last_run_timestamp_seconds", b] == T2 + 60
    assert found["batchsms_run_exit_code", b] == 143
    write_metrics(path, stats(), 0, T2 + 120)
    assert samples(path)["batchsms_last_success_timestamp_seconds", b] == T2 + 120


@pytest.mark.parametrize("old", [b"not metrics at all {", b"\xff\xfe", b""])
def test_a_mangled_previous_file_carries_nothing(tmp_path: Path, old: bytes) -> None:
    """An unreadable old file is replaced; there is no success to carry over (0)."""
    path = tmp_path / "nightly.prom"
    path.write_bytes(old)
    assert previous_last_success(path) is None
    write_metrics(path, stats(failed=1), 1, T1)
    assert samples(path)["batchsms_last_success_timestamp_seconds", (("batch", "nightly"),)] == 0


def test_no_temporary_file_is_left(tmp_path: Path) -> None:
    """Only the target remains in the collector's directory."""
    path = tmp_path / "nightly.prom"
    write_metrics(path, stats(), 0, T1)
    write_metrics(path, stats(failed=2), 1, T2)
    assert os.listdir(tmp_path) == ["nightly.prom"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails, the old content stays whole and the temporary file is removed."""
    path = tmp_path / "nightly.prom"
    write_metrics(path, stats(), 0, T1)
    before = path.read_bytes()

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", refuse)
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(UsageError, match="No space left on device"):
        write_metrics(path, stats(failed=1), 1, T2)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["nightly.prom"]


def test_readers_see_old_or_new_content(tmp_path: Path) -> None:
    """A reader racing the writer only ever sees a whole file, old or new."""
    path = tmp_path / "nightly.prom"
    write_metrics(path, stats(), 0, T1)
    contents = {path.read_bytes()}
    write_metrics(path, stats(failed=1), 1, T2)
    contents.add(path.read_bytes())
    done = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not done.is_set():
            seen.append(path.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(100):
            write_metrics(path, stats(failed=i % 2), i % 2, T2 if i % 2 else T1)
    finally:
        done.set()
        reader.join()
    assert seen
    assert set(seen) <= contents


def test_check_metrics_path(tmp_path: Path) -> None:
    """A path that could not be written is refused before the run starts."""
    check_output("--metrics-file", tmp_path / "nightly.prom")
    with pytest.raises(UsageError, match="is a directory"):
        check_output("--metrics-file", tmp_path)
    with pytest.raises(UsageError, match=r"missing.*No such file"):
        check_output("--metrics-file", tmp_path / "missing" / "nightly.prom")
