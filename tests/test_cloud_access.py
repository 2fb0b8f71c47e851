"""open_cloud_access: the §6 pieces composed for one endpoint, as the commands' set-up will."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchsms.errors import UsageError
from batchsms.simulator.metadata import MetadataState
from batchsms.simulator.server import running
from batchsms.transport.client import SmsClient
from batchsms.transport.cloud import open_cloud_access

pytestmark = pytest.mark.anyio

PW = "cloud-proxy-password-77"


async def test_ecs_agency_with_project_from_iam_and_a_proxy(tmp_path: Path) -> None:
    state = MetadataState(lifetime=600, projects={"cn-north-4": "proj-from-iam"})
    async with running(metadata=state) as sim:
        assert sim.metadata_url is not None
        env = {"BATCHSMS_METADATA_ENDPOINT": sim.metadata_url,
               "HUAWEICLOUD_SDK_IAM_ENDPOINT": sim.metadata_url,
               "HTTPS_PROXY": f"http://carol:{PW}@proxy.corp:3128", "NO_PROXY": "127.0.0.1"}
        access = await open_cloud_access(env, "https://sms.cn-north-4.myhuaweicloud.com",
                                         region="cn-north-4", home=tmp_path)
        assert access.project_id == "proj-from-iam"
        assert access.provider.temporary
        assert access.proxy is not None
        options = access.client_options()
        assert options["refreshing"]
        lines = dict(access.lines())
        assert lines["credentials"] == f"ECS metadata ({sim.metadata_url})"
        assert lines["project"] == (f"proj-from-iam (IAM {sim.metadata_url} for cn-north-4)")
        assert lines["proxy"] == "http://carol:***@proxy.corp:3128"
        assert PW not in repr(access.lines())
        # The same set-up against the simulator itself: NO_PROXY covers it, the requests pass.
        local = await open_cloud_access(env, sim.url, region="cn-north-4", home=tmp_path)
        assert local.proxy is None
        async with SmsClient(sim.url, local.auth, concurrency=2, timeout=10,
                             **local.client_options()) as client:
            assert (await client.put_task("t-1", b'{"name": "n"}')).status == 200
        assert sim.requests[-1].headers["X-Project-Id"] == "proj-from-iam"


async def test_no_lookup_where_the_sdk_does_none(tmp_path: Path) -> None:
    token = await open_cloud_access({"BATCHSMS_AUTH_TOKEN": "a-token-value"}, "https://x",
                                    region="cn-north-4", home=tmp_path)
    assert token.project_id is None
    assert dict(token.lines())["project"] == "from the token's scope"
    env = {"HUAWEICLOUD_SDK_AK": "AK12345678", "HUAWEICLOUD_SDK_SK": "SK12345678"}
    configured = await open_cloud_access({**env, "HUAWEICLOUD_SDK_PROJECT_ID": "p-9"},
                                         "https://x", region="cn-north-4", home=tmp_path)
    assert configured.project_id == "p-9"
    none = await open_cloud_access(env, "https://x", home=tmp_path)
    assert none.project_id is None
    assert "HUAWEICLOUD_SDK_REGION" in dict(none.lines())["project"]
    assert not none.client_options()["refreshing"]


async def test_an_unknown_region_is_a_usage_error(tmp_path: Path) -> None:
    state = MetadataState(projects={})
    async with running(metadata=state) as sim:
        assert sim.metadata_url is not None
        env = {"BATCHSMS_METADATA_ENDPOINT": sim.metadata_url,
               "HUAWEICLOUD_SDK_IAM_ENDPOINT": sim.metadata_url,
               "HUAWEICLOUD_SDK_REGION": "xx-nowhere-1"}
        with pytest.raises(UsageError, match="no project named 'xx-nowhere-1'"):
            await open_cloud_access(env, sim.url, home=tmp_path)
