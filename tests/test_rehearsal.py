"""The building blocks of issue 20 together, against the simulator serving its rehearsal endpoints:
ECS metadata credentials living 1.5 s, the project looked up in IAM, SmsClient signing with the
credentials of the moment while the Refresher renews them. (The run command is not wired yet:
this is what its wiring will compose.)"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import aiohttp
import anyio
import pytest

from batchsms.simulator.cli import POD_TOKEN_ENV
from batchsms.simulator.cli import main as simulator_main
from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState
from batchsms.simulator.server import running
from batchsms.transport.client import SmsClient
from batchsms.transport.iam import lookup_project_id
from batchsms.transport.providers import ProviderAuthenticator, resolve_provider
from tests.processes import simulator_process

pytestmark = pytest.mark.anyio

PROJECT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


@pytest.mark.parametrize("source", ["metadata", "pod identity"])
async def test_requests_through_several_generations_of_credentials(
        source: str, tmp_path: Path) -> None:
    state = MetadataState(lifetime=1.5, projects={"cn-north-4": PROJECT})
    async with running(metadata=state, log_size=1000) as sim:
        assert sim.metadata_url is not None
        env = {"BATCHSMS_METADATA_ENDPOINT": sim.metadata_url}
        if source == "pod identity":
            token_file = tmp_path / "token"
            token_file.write_text(state.pod_token)
            env = {"HC_CONTAINER_CREDENTIALS_FULL_URI": sim.metadata_url + POD_IDENTITY_PATH,
                   "HC_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file)}
        provider = await resolve_provider(env)
        auth = ProviderAuthenticator(provider)
        async with aiohttp.ClientSession() as session:
            project = await lookup_project_id(session, sim.metadata_url, "cn-north-4", auth)
        assert project == PROJECT
        auth = ProviderAuthenticator(provider, project_id=project)
        statuses = []
        async with anyio.create_task_group() as tg, SmsClient(
                sim.url, auth, concurrency=4, timeout=10, refreshing=True) as client:
            tg.start_soon(provider.run)
            with anyio.fail_after(20):
                while len(state.issued) < 4:
                    reply = await client.put_task(f"task-{len(statuses)}", b'{"name": "n"}')
                    statuses.append(reply.status)
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert set(statuses) == {200}, statuses
    puts = [r for r in sim.requests if r.method == "PUT"]
    assert len(puts) == len(statuses)
    assert {r.headers.get("X-Project-Id") for r in puts} == {PROJECT}
    signed_by = {r.headers["Authorization"].partition("Access=")[2][:7] for r in puts}
    assert len(signed_by) >= 3  # several generations signed requests


def test_simulator_options_for_rehearsal_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        simulator_main(["--project", "no-equals-sign"])
    assert "want REGION=PROJECT_ID" in capsys.readouterr().err


@pytest.mark.usefixtures("loopback_only")
def test_the_simulator_command_serves_the_credential_endpoints() -> None:
    env = {"BATCHSMS_SIMULATOR_POD_TOKEN": "pod-token-from-the-environment"}
    with simulator_process("--credentials-lifetime", "60", "--project", "cn-north-4=p-1",
                           env=env, text=True) as sim:
        assert sim.process.stderr is not None
        line = sim.process.stderr.readline()
        assert line.startswith("credential endpoints (ECS metadata, pod identity, IAM) on "), line
        url = line.split()[-1]
        request = urllib.request.Request(url + POD_IDENTITY_PATH, data=b"{}", method="POST",
                                         headers={"Authorization": env[POD_TOKEN_ENV]})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert b'"securitytoken"' in answer.read()
