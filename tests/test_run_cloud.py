"""Runs on temporary credentials (CONTRACT §6), against the simulator's rehearsal endpoints:
refreshed in the background through several generations with the project id from IAM, a 401 on
revoked temporary credentials refreshed and retried without counting toward the auth abort, and
a metadata service that stops answering mid-run ending the run as an auth abort (exit 3), every
line accounted for, one stderr line naming the source."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

import batchsms
from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState
from batchsms.simulator.server import running
from tests.jsonl import read_jsonl, write_jsonl
from tests.processes import Here
from tests.servers import in_thread

PROJECT = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials of the machine's user; none of the environment's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("BATCHSMS_AUTH_TOKEN", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK",
                 "CLOUD_SDK_AK", "CLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def _updates(n: int) -> list[dict[str, object]]:
    return [{"task_id": f"t-{i}", "body": {"name": f"n-{i}"}} for i in range(n)]


@pytest.mark.anyio
@pytest.mark.parametrize("source", ["ecs agency", "pod identity"])
async def test_a_run_through_several_generations_with_the_project_from_iam(
        source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    await _generations(source, monkeypatch, tmp_path, lines=240, rate=60, lifetime=2.0)


@pytest.mark.slow  # ~25 s each: issue 20's figure, 1 200 lines at --rate 50, credentials of 8 s
@pytest.mark.anyio
@pytest.mark.parametrize("source", ["ecs agency", "pod identity"])
async def test_1200_lines_at_rate_50_on_credentials_living_8_s(
        source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    await _generations(source, monkeypatch, tmp_path, lines=1200, rate=50, lifetime=8.0)


async def _generations(source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *,
                       lines: int, rate: float, lifetime: float) -> None:
    state = MetadataState(lifetime=lifetime, projects={"cn-north-4": PROJECT})
    async with running(metadata=state, log_size=lines * 2) as sim:
        assert sim.metadata_url is not None
        monkeypatch.setenv("BATCHSMS_METADATA_ENDPOINT", sim.metadata_url)
        monkeypatch.setenv("HUAWEICLOUD_SDK_IAM_ENDPOINT", sim.metadata_url)
        if source == "pod identity":
            token_file = tmp_path / "pod-token"
            token_file.write_text(state.pod_token)
            monkeypatch.setenv("HC_CONTAINER_CREDENTIALS_FULL_URI",
                               sim.metadata_url + POD_IDENTITY_PATH)
            monkeypatch.setenv("HC_CONTAINER_AUTHORIZATION_TOKEN_FILE", str(token_file))
        async with batchsms.Client(sim.url, region="cn-north-4", rate=rate,
                                   concurrency=8) as client:
            with anyio.fail_after(lines / rate * 3):
                outcomes = [o async for o in client.run(_updates(lines))]
    assert {o.status for o in outcomes} == {"succeeded"}
    assert len(outcomes) == lines
    assert len(state.issued) >= 3  # the first generation, and refreshes during the run
    puts = [r for r in sim.requests if r.method == "PUT"]
    assert len(puts) >= lines
    assert {r.headers.get("X-Project-Id") for r in puts} == {PROJECT}
    assert sum(r.status == 401 for r in puts) <= 2
    assert len({r.headers["Authorization"].partition("Access=")[2][:7] for r in puts}) >= 2


@pytest.mark.anyio
async def test_a_401_on_revoked_temporary_credentials_is_refreshed_not_counted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every generation is revoked after some requests: each 401 forces a refresh and the
    request goes again; more than three of them do not abort the run."""
    state = MetadataState(lifetime=600)
    async with running(metadata=state, log_size=1000) as sim:
        assert sim.metadata_url is not None
        monkeypatch.setenv("BATCHSMS_METADATA_ENDPOINT", sim.metadata_url)
        async with batchsms.Client(sim.url, rate=0, concurrency=1) as client:
            outcomes = []
            async for outcome in client.run(_updates(40)):
                outcomes.append(outcome)
                if len(outcomes) % 8 == 0:
                    state.issued.clear()  # revoked: the gateway answers 401 from now on
    assert [o.status for o in outcomes] == ["succeeded"] * 40
    assert sum(r.status == 401 for r in sim.requests) >= 4


def test_the_metadata_service_failing_mid_run_is_an_auth_abort(here: Here,
                                                                tmp_path: Path) -> None:
    state = MetadataState(lifetime=3.0)
    updates = tmp_path / "in.jsonl"
    write_jsonl(updates, _updates(600))
    out = tmp_path / "out.jsonl"
    with in_thread(running(metadata=state)) as sim:
        assert sim.metadata_url is not None
        threading.Timer(1.0, lambda: setattr(state, "failing", 500)).start()
        env = {"BATCHSMS_METADATA_ENDPOINT": sim.metadata_url}
        result = here("run", str(updates), "--endpoint", sim.url, "--out", str(out),
                      "--rate", "50", "--log-format", "json", "--no-progress", env=env)
    assert result.returncode == 3, result.stderr
    records = read_jsonl(out)
    assert sorted({r["line"] for r in records}) == list(range(1, 601))
    assert any(r["status"] == "succeeded" for r in records)
    assert f"ECS metadata ({sim.metadata_url})" in result.stderr
    assert "expired" in result.stderr
    for issued in state.issued.values():
        assert issued.secret not in result.stderr + out.read_text()
