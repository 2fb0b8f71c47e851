"""The simulator's rehearsal endpoints: ECS metadata, CCE pod identity and IAM's project list."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import orjson
import pytest

from batchsms.simulator.metadata import POD_IDENTITY_PATH, MetadataState, metadata_app
from batchsms.transport.signing import Signer
from batchsms.transport.sources import parse_temporary
from tests.clocks import FakeClock
from tests.servers import serving

pytestmark = pytest.mark.anyio

T0 = 1_780_000_000.0


async def test_metadata_routes_behave_as_the_service() -> None:
    clock = FakeClock(T0)
    state = MetadataState(lifetime=8, clock=clock)
    async with serving(metadata_app(state)) as url, aiohttp.ClientSession() as session:
        async with session.put(url + "/meta-data/latest/api/token") as response:
            assert response.status == 400  # the TTL header is required
        async with session.put(url + "/meta-data/latest/api/token",
                               headers={"X-Metadata-Token-Ttl-Seconds": "21600"}) as response:
            assert response.status == 200
            token = await response.text()
        async with session.get(url + "/openstack/latest/securitykey") as response:
            assert response.status == 401  # a session token was issued: it is required
        async with session.get(url + "/openstack/latest/securitykey",
                               headers={"X-Metadata-Token": token}) as response:
            assert response.status == 200
            first = parse_temporary(await response.read(), "test", clock.now)
        assert first.expires_at == pytest.approx(T0 + 8, abs=1e-3)
        async with session.post(url + POD_IDENTITY_PATH, json={},
                                headers={"Authorization": "wrong"}) as response:
            assert response.status == 401
        async with session.post(url + POD_IDENTITY_PATH, json={},
                                headers={"Authorization": state.pod_token}) as response:
            second = parse_temporary(await response.read(), "test", clock.now)
        assert second.credentials.ak != first.credentials.ak
        assert len(state.issued) == 2
        state.failing = 503
        async with session.post(url + POD_IDENTITY_PATH, json={},
                                headers={"Authorization": state.pod_token}) as response:
            assert response.status == 503


async def test_iam_route_accepts_only_unexpired_issued_credentials() -> None:
    clock = FakeClock(datetime.now(UTC).timestamp())
    state = MetadataState(lifetime=8, clock=clock, projects={"cn-north-4": "p-123"})
    answer = orjson.dumps({"credential": state.mint()})
    creds = parse_temporary(answer, "test", clock.now).credentials
    headers = Signer(creds).headers_for("GET", "h", "/v3/projects", [("name", "cn-north-4")],
                                        {}, b"", datetime.fromtimestamp(clock.now, UTC))
    query = [("name", "cn-north-4")]
    assert state.check_signature("GET", "/v3/projects", query, headers, b"") is None
    assert state.check_signature("GET", "/v3/projects", [("name", "x")], headers, b"") == (
        "signature does not match")
    no_token = {k: v for k, v in headers.items() if k != "X-Security-Token"}
    assert "X-Security-Token" in (state.check_signature("GET", "/v3/projects", query, no_token,
                                                        b"") or "")
    clock.advance(8)
    assert state.check_signature("GET", "/v3/projects", query, headers, b"") == (
        "the temporary credentials have expired")
    assert creds.sk not in repr(state)
