"""`batchsms check` (commands/check.py) against the simulator: one line per thing resolved, one
read, exit 0/2/3 (CONTRACT §4), never a secret."""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson
import pytest

from batchsms import cli
from batchsms.commands.check import CheckConfig, main
from batchsms.errors import ExitCode
from batchsms.simulator.access import ExpectedCredentials
from batchsms.simulator.metadata import MetadataState
from batchsms.simulator.server import SimulatorHandle, running
from tests.proxies import tinyproxy_running
from tests.servers import in_thread

TOKEN = "check-token-5150"
AK, SK = "AKCHECK123456", "SKCHECK-secret-7781"
PW = "check-proxy-pw-404"


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials file of the machine's user."""
    monkeypatch.setenv("HOME", str(tmp_path))


def _sim(credentials: ExpectedCredentials | None = None,
         metadata: MetadataState | None = None) -> Iterator[SimulatorHandle]:
    return in_thread(running(credentials=credentials, metadata=metadata))


def _check(env: Mapping[str, str], **options: object) -> tuple[ExitCode, str]:
    out = io.StringIO()
    code = main(CheckConfig(**options), {"BATCHSMS_METADATA_ENDPOINT": "http://127.0.0.1:9",  # type: ignore[arg-type]
                                         **env}, out)
    return code, out.getvalue()


def _lines(text: str) -> dict[str, str]:
    return {what: value.strip() for what, _, value in
            (line.partition("  ") for line in text.splitlines())}


def test_a_token_is_resolved_and_proved_by_one_read() -> None:
    with _sim(ExpectedCredentials(token=TOKEN)) as sim:
        code, text = _check({"BATCHSMS_AUTH_TOKEN": TOKEN}, endpoint=sim.url)
        assert [r.method for r in sim.requests] == ["GET"]
    assert code == ExitCode.OK, text
    lines = _lines(text)
    assert lines["endpoint"] == sim.url
    assert lines["credentials"] == "BATCHSMS_AUTH_TOKEN"
    assert lines["project"] == "from the token's scope"
    assert lines["proxy"] == "none (direct)"
    assert lines["read"] == "ListTasks limit 1: HTTP 200"
    assert TOKEN not in text


def test_aksk_with_the_checking_simulator_and_a_rejected_key() -> None:
    env = {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": SK,
           "HUAWEICLOUD_SDK_PROJECT_ID": "proj-7"}
    with _sim(ExpectedCredentials(ak=AK, sk=SK)) as sim:
        code, text = _check(env, endpoint=sim.url, json=True)
        assert sim.requests[-1].headers["X-Project-Id"] == "proj-7"
        bad, rejected = _check({**env, "HUAWEICLOUD_SDK_SK": "SK-the-wrong-one-2"},
                               endpoint=sim.url)
    assert code == ExitCode.OK, text
    found = orjson.loads(text)
    assert found["credentials"] == "HUAWEICLOUD_SDK_AK + HUAWEICLOUD_SDK_SK"
    assert found["project"].startswith("proj-7 (configured")
    assert found["ok"] is True
    assert found["exit"] == 0
    assert found["clock_offset_s"] == 0
    assert bad == ExitCode.ABORTED
    assert "HTTP 401" in _lines(rejected)["read"]
    assert "rejected the credentials" in rejected
    assert SK not in text + rejected
    assert "SK-the-wrong-one-2" not in rejected


def test_an_ecs_agency_rehearsal_with_the_project_from_iam() -> None:
    state = MetadataState(lifetime=30, projects={"cn-north-4": "proj-from-iam"})
    with _sim(metadata=state) as sim:
        assert sim.metadata_url is not None
        env = {"BATCHSMS_METADATA_ENDPOINT": sim.metadata_url,
               "HUAWEICLOUD_SDK_IAM_ENDPOINT": sim.metadata_url}
        code, text = _check(env, endpoint=sim.url, region="cn-north-4")
        assert sim.requests[-1].headers["X-Project-Id"] == "proj-from-iam"
        unknown, missing = _check(env, endpoint=sim.url, region="xx-nowhere-1")
    assert code == ExitCode.OK, text
    lines = _lines(text)
    assert lines["credentials"] == f"ECS metadata ({sim.metadata_url})"
    assert lines["project"] == f"proj-from-iam (IAM {sim.metadata_url} for cn-north-4)"
    assert unknown == ExitCode.USAGE
    assert "xx-nowhere-1" in missing
    assert "FAILED" in missing
    for issued in state.issued.values():
        assert issued.secret not in text + missing
        assert issued.security_token not in text + missing


def test_nothing_to_resolve_or_reach_is_exit_2() -> None:
    code, text = _check({}, endpoint="http://127.0.0.1:9")
    assert code == ExitCode.USAGE
    assert "no credentials found" in text
    code, text = _check({"BATCHSMS_AUTH_TOKEN": TOKEN}, endpoint="http://127.0.0.1:9",
                        timeout=5.0)
    assert code == ExitCode.USAGE
    assert "FAILED" in _lines(text)["read"]
    code, text = _check({"BATCHSMS_AUTH_TOKEN": TOKEN})
    assert code == ExitCode.USAGE
    assert "no endpoint" in text


def test_through_tinyproxy_with_a_password(tmp_path: Path) -> None:
    with tinyproxy_running(tmp_path, "alice", PW) as address, _sim(
            ExpectedCredentials(token=TOKEN)) as sim:
        # The metadata endpoint's host always goes direct: not the simulator's here.
        env = {"BATCHSMS_AUTH_TOKEN": TOKEN, "HTTP_PROXY": f"http://alice:{PW}@{address}",
               "BATCHSMS_METADATA_ENDPOINT": "http://localhost:9"}
        code, text = _check(env, endpoint=sim.url)
        assert len(sim.requests) == 1
        assert "tinyproxy" in sim.requests[0].headers.get("Via", "")
        # No user and password: tinyproxy's 407 (a wrong password it answers 401, as if the
        # service had; tests/test_client_cloud.py).
        refused, told = _check({**env, "HTTP_PROXY": f"http://{address}"}, endpoint=sim.url)
        assert len(sim.requests) == 1  # the proxy refused: nothing reached the endpoint
        direct, _ = _check({**env, "NO_PROXY": "127.0.0.1"}, endpoint=sim.url)
    assert code == ExitCode.OK, text
    assert _lines(text)["proxy"] == f"http://alice:***@{address}"
    assert refused == ExitCode.USAGE, told
    assert address in _lines(told)["read"]
    assert PW not in text + told
    assert direct == ExitCode.OK


def test_the_command_line(monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    with _sim(ExpectedCredentials(token=TOKEN)) as sim:
        monkeypatch.setenv("BATCHSMS_AUTH_TOKEN", TOKEN)
        assert cli.main(["check", "--endpoint", sim.url, "--region", "cn-north-4"]) == 0
    out = capsys.readouterr().out
    assert "ListTasks limit 1: HTTP 200" in out
    assert TOKEN not in out
