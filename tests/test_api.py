"""The Python API (CONTRACT §12): `batchsms.Client`, `validate`, `run_sync`, against the
simulator on loopback; the README's example, run and type-checked (`mypy --strict`, py.typed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

import batchsms
from batchsms.simulator.threaded import SimThread, simulator_thread
from tests import api_example
from tests.processes import clean_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio
TOKEN = "api-test-token"  # the simulator checks none here


@pytest.fixture
def sim() -> Iterator[SimThread]:
    with simulator_thread() as thread:
        yield thread


def _check_example(sim: SimThread, results: dict[str, list[batchsms.Outcome]]) -> None:
    """500 + 100 updates, each with one `succeeded` outcome, and each task as it was asked."""
    listed, generated = results["list"], results["generator"]
    assert sorted(o.line for o in listed) == list(range(1, 501))
    assert sorted(o.line for o in generated) == list(range(1, 101))
    for outcome in (*listed, *generated):
        assert outcome.status == "succeeded", outcome.to_dict()
        assert outcome.attempts == 1
        assert outcome.http_status == 200
    assert {o.ref for o in listed} == {f"web-{i:04d}" for i in range(500)}
    assert len({o.run_id for o in listed}) == 1
    assert {o.run_id for o in listed}.isdisjoint({o.run_id for o in generated})
    record = listed[0].to_dict()
    assert list(record)[:7] == ["run_id", "line", "task_id", "op", "ref", "status",
                                "http_status"]
    assert record["status"] == "succeeded"
    assert record["errors"] == []

    def state() -> tuple[dict[str, tuple[int, int]], dict[str, Any]]:
        tasks = sim.handle.tasks
        ids = [f"api-list-{i:04d}" for i in range(500)] + [f"api-gen-{i:04d}" for i in range(100)]
        counts = {t: (sim.handle.counts(t).received, sim.handle.counts(t).applied) for t in ids}
        speeds = {t: (tasks.stored(t) or {}).get("speed_limit") for t in ids}
        return counts, speeds

    counts, speeds = sim.call(state)
    assert set(counts.values()) == {(1, 1)}  # one PUT per task, applied
    assert all(speeds[f"api-list-{i:04d}"] == api_example.LIST_SPEED for i in range(500))
    assert all(speeds[f"api-gen-{i:04d}"] == 300 + i for i in range(100))


def test_example_inside_asyncio_run(sim: SimThread) -> None:
    """The README's script: a list and an async generator, in the caller's `asyncio.run`."""
    _check_example(sim, asyncio.run(api_example.apply(sim.handle.url, TOKEN)))


def test_example_from_a_worker_thread(sim: SimThread) -> None:
    """The same from a thread that is not the main one (no signal can be set up there)."""
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(asyncio.run(api_example.apply(sim.handle.url, TOKEN)))
        except BaseException as exc:  # raised in the test's thread below
            box.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if isinstance(box[0], BaseException):
        raise box[0]
    _check_example(sim, box[0])


def test_readme_python_blocks_run() -> None:
    """Each ```python block of the README's "Python API" section runs as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2
    outputs = [subprocess.run([sys.executable, "-c", block], env=clean_env(), cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
               for block in blocks]
    for done in outputs:
        assert done.returncode == 0, done.stderr
    assert "1 succeeded None None" in outputs[0].stdout
    assert "2 invalid validation body.speedlimit: unknown field 'speedlimit'" in outputs[0].stdout


def test_validate_returns_every_problem_with_its_path() -> None:
    assert batchsms.validate({"task_id": "t1", "body": {"speed_limit": 200}}) == []
    problems = batchsms.validate({"task_id": "t1", "body": {
        "speedlimit": 1, "target_server": {"disks": [{"partition_style": "NOPE"}]}}})
    paths = {p.path for p in problems}
    assert "body.speedlimit" in paths
    assert any(p.startswith("body.target_server.disks[0]") for p in paths), paths
    assert all(isinstance(p.message, str) and p.message for p in problems)
    # the envelope, as a line of a file
    (extra,) = batchsms.validate({"task_id": "t1", "body": {"speed_limit": 1}, "extra": 1})
    assert (extra.path, "unknown key" in extra.message) == ("extra", True)
    assert [p.path for p in batchsms.validate({"body": {"speed_limit": 1}})] == ["task_id"]
    # what is not JSON at all
    (not_json,) = batchsms.validate({"task_id": "t1", "body": {"speed_limit": {1, 2}}})
    assert not_json.path == "line"
    assert batchsms.validate(["not", "an", "object"])[0].path == "line"  # type: ignore[arg-type]


async def test_abort_raises_after_every_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials rejected: every update's outcome is yielded, then `AbortedError`."""
    for name in ("BATCHSMS_SIMULATOR_AK", "BATCHSMS_SIMULATOR_SK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BATCHSMS_SIMULATOR_TOKEN", "the-right-one")
    updates = [{"task_id": f"t-{i}", "body": {"speed_limit": 1}} for i in range(300)]
    updates.append({"task_id": "bad", "body": {}})
    seen: list[batchsms.Outcome] = []

    async def take_all(client: batchsms.Client) -> None:
        async for outcome in client.run(updates):
            seen.append(outcome)  # noqa: PERF401 - those before the raise are the point

    async with batchsms.Client(simulate=True, credentials=batchsms.TokenCredentials("wrong"),
                               rate=0) as client:
        with pytest.raises(batchsms.AbortedError, match="credentials were rejected") as caught:
            await take_all(client)
    assert isinstance(caught.value, batchsms.BatchSmsError)
    assert sorted(o.line for o in seen) == list(range(1, 302))
    assert {o.status for o in seen} <= {"failed", "skipped", "invalid"}
    assert sum(o.error_code == "aborted" for o in seen) >= 290
    assert next(o for o in seen if o.line == 301).status == "invalid"
    assert "wrong" not in repr(client)

    entries: list[batchsms.PlanEntry] = []

    async def plan_all(client: batchsms.Client) -> None:
        async for entry in client.plan(updates[:40]):
            entries.append(entry)  # noqa: PERF401 - those before the raise are the point

    async with batchsms.Client(simulate=True, credentials=batchsms.TokenCredentials("wrong"),
                               rate=0) as client:
        with pytest.raises(batchsms.AbortedError, match="credentials were rejected"):
            await plan_all(client)
    assert [e.line for e in entries] == list(range(1, 41))
    assert {e.verdict for e in entries} == {batchsms.Verdict.FAIL}


def test_run_sync_and_its_abort(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = batchsms.run_sync([{"task_id": "t1", "body": {"speed_limit": 7}},
                                  {"task_id": "t2", "body": {"nope": 1}}], simulate=True)
    assert sorted((o.line, str(o.status)) for o in outcomes) == [(1, "succeeded"),
                                                                  (2, "invalid")]
    monkeypatch.setenv("BATCHSMS_SIMULATOR_TOKEN", "the-right-one")
    with pytest.raises(batchsms.AbortedError) as caught:
        batchsms.run_sync([{"task_id": f"t{i}", "body": {"speed_limit": 7}} for i in range(20)],
                          simulate=True, credentials=batchsms.TokenCredentials("wrong"))
    assert sorted(o.line for o in caught.value.outcomes) == list(range(1, 21))


async def test_run_sync_refuses_inside_a_running_loop() -> None:
    with pytest.raises(batchsms.EventLoopRunningError, match="event loop is running") as caught:
        batchsms.run_sync([{"task_id": "t1", "body": {"speed_limit": 7}}], simulate=True)
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value, batchsms.BatchSmsError)


def _process_state() -> tuple[object, ...]:
    signals = tuple(signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    root = logging.getLogger()
    return (signals, tuple(root.handlers), root.level, structlog.is_configured(),
            structlog.get_config()["processors"], resource.getrlimit(resource.RLIMIT_NOFILE))


def test_no_signal_handler_no_limit_no_logging_config(sim: SimThread) -> None:
    """The process is as the caller left it, during the run and after."""
    async def main() -> tuple[object, ...]:
        before = _process_state()  # in the loop: asyncio.run's own SIGINT handler is set
        async with batchsms.Client(sim.handle.url, credentials=batchsms.TokenCredentials(TOKEN),
                                   rate=0) as client:
            during = None
            async for _ in client.run([{"task_id": f"s-{i}", "body": {"speed_limit": 3}}
                                       for i in range(50)]):
                during = during or _process_state()
            assert during == before
        assert _process_state() == before
        return before

    outside = _process_state()
    asyncio.run(main())
    assert _process_state() == outside


async def test_backpressure_reads_no_further_than_the_caller_takes(sim: SimThread) -> None:
    """A caller that stops taking outcomes stops the reading: memory stays flat."""
    pulled = 0

    def updates() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(100_000):
            pulled += 1
            yield {"task_id": f"bp-{i}", "body": {"speed_limit": 3}}

    client = batchsms.Client(sim.handle.url, credentials=batchsms.TokenCredentials(TOKEN),
                             rate=0)
    async with client, contextlib.aclosing(client.run(updates())) as outcomes:
        async for outcome in outcomes:
            assert outcome.status == "succeeded"
            break
        # The run goes on as far as it may, then waits for the caller: the count stops
        # (without backpressure it would go on through the 100 000).
        last = -1
        with anyio.fail_after(20):
            while pulled != last:
                last = pulled
                await asyncio.sleep(0.3)
    assert pulled < 3_000, pulled


async def test_plan_and_an_async_iterable_with_invalid_lines(sim: SimThread) -> None:
    async def updates() -> AsyncIterator[dict[str, Any]]:
        yield {"task_id": "p-1", "body": {"speed_limit": 50}}
        yield {"task_id": "p-1", "body": {"speed_limit": 50}}
        yield {"task_id": "p-2", "body": {"speedlimit": 50}}

    async with batchsms.Client(sim.handle.url,
                               credentials=batchsms.TokenCredentials(TOKEN)) as client:
        entries = [entry async for entry in client.plan(updates())]
        outcomes = [o async for o in client.run(updates(), skip_unchanged=True)]
    assert [(e.line, e.verdict) for e in entries] == [
        (1, batchsms.Verdict.CHANGE), (2, batchsms.Verdict.AS_WANTED), (3, batchsms.Verdict.FAIL)]
    assert entries[0].to_dict()["changes"]["speed_limit"]["to"] == 50
    assert entries[2].to_dict()["errors"][0]["path"] == "body.speedlimit"
    by_line = {o.line: o for o in outcomes}
    assert (by_line[1].status, by_line[2].error_code) == ("succeeded", "unchanged")
    assert by_line[3].errors[0].path == "body.speedlimit"
    assert sim.call(lambda: sim.handle.counts("p-1").applied) == 1


@pytest.mark.parametrize("kind", ["iterable", "async iterable"])
async def test_an_error_of_the_updates_is_raised_as_it_is(sim: SimThread, kind: str) -> None:
    """The caller's iterable fails: the outcomes recorded so far, then its own exception."""
    def updates() -> Iterator[dict[str, Any]]:
        for i in range(300):
            yield {"task_id": f"e-{i}", "body": {"speed_limit": 3}}
        raise LookupError("the source broke")

    async def arriving() -> AsyncIterator[dict[str, Any]]:
        for update in updates():
            yield update

    seen: list[batchsms.Outcome] = []

    async def take_all(client: batchsms.Client) -> None:
        async for outcome in client.run(updates() if kind == "iterable" else arriving()):
            seen.append(outcome)  # noqa: PERF401 - those before the raise are the point

    async with batchsms.Client(sim.handle.url, credentials=batchsms.TokenCredentials(TOKEN),
                               rate=0) as client:
        with pytest.raises(LookupError, match="the source broke"):
            await take_all(client)
        # the client is still usable
        assert [o.status async for o in client.run([{"task_id": "e-x", "body": {"nope": 1}}])
                ] == ["invalid"]
    assert len({o.line for o in seen}) == len(seen) <= 300
    assert len(seen) > 0


async def test_usage_errors_and_secrets_kept_out_of_repr() -> None:
    with pytest.raises(batchsms.UsageError, match="concurrency"):
        batchsms.Client(simulate=True, concurrency=0)
    with pytest.raises(batchsms.UsageError, match="not both"):
        batchsms.Client("http://127.0.0.1:1", simulate=True)
    with pytest.raises(batchsms.CredentialsError):
        batchsms.Client(simulate=True, credentials=batchsms.TokenCredentials(""))
    client = batchsms.Client(simulate=True)
    with pytest.raises(batchsms.UsageError, match="async context manager"):
        await anext(client.run([]))
    async with batchsms.Client(simulate=True) as opened:
        with pytest.raises(batchsms.UsageError, match="op="):
            await anext(opened.run([], op="speed_limit"))
        one = {"task_id": "t1", "body": {"speed_limit": 1}}
        for wrong in (one, '{"task_id": "t1"}\n'):
            with pytest.raises(batchsms.UsageError, match="iterable or async iterable"):
                await anext(opened.run(wrong))  # type: ignore[arg-type]
    secret = batchsms.AkSkCredentials("AK-VISIBLE", "SK-SECRET", security_token="ST-SECRET")
    shown = repr(batchsms.Client("https://sms.example.com", credentials=secret))
    assert "SK-SECRET" not in shown
    assert "ST-SECRET" not in shown
    assert "AK-VISIBLE" not in shown


def test_public_names_and_py_typed() -> None:
    assert sorted(batchsms.__all__) == sorted(set(batchsms.__all__))
    for name in batchsms.__all__:
        assert getattr(batchsms, name) is not None
    package = Path(batchsms.__file__).parent
    assert (package / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in data["tool"]["setuptools"]["package-data"]["batchsms"]


@pytest.mark.slow  # ~10-20 s of mypy from a cold cache; that py.typed ships is checked above
def test_mypy_strict_on_the_example_uses_py_typed(tmp_path: Path) -> None:
    """The example type-checks under `--strict` with batchsms found as an installed package
    (a site directory, where mypy reads only packages marked `py.typed`), not as source."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "batchsms").symlink_to(Path(batchsms.__file__).parent, target_is_directory=True)
    script = tmp_path / "example.py"
    script.write_text((ROOT / "tests" / "api_example.py").read_text(encoding="utf-8"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("MYPYPATH", None)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
         str(tmp_path / "cache"), "--python-executable", sys.executable, str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


_LOGGING_SCRIPT = """
import asyncio, logging, sys
import batchsms
if sys.argv[1] == "info":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
async def main():
    async with batchsms.Client(simulate=True) as client:
        async for outcome in client.run([{"task_id": "t-1", "body": {"speed_limit": 5}}]):
            print("OUT", outcome.status)
asyncio.run(main())
"""


@pytest.mark.parametrize("logging_set_up", ["none", "info"])
def test_the_library_prints_nothing_its_events_go_to_stdlib_logging(logging_set_up: str) -> None:
    """A script's stdout is its own: the engine's events (`run.started`...) go to the standard
    library's `batchsms` logger, shown only as the application's logging set-up says (before,
    structlog's unconfigured default printed each of them to stdout)."""
    done = subprocess.run([sys.executable, "-c", _LOGGING_SCRIPT, logging_set_up],
                          env=clean_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "OUT succeeded\n"
    if logging_set_up == "info":
        assert "INFO:batchsms:run.started run_id=" in done.stderr
    else:
        assert "run.started" not in done.stderr
