"""The official Huawei Cloud SDK (huaweicloudsdksms) as a client of the simulator: the judge of
what the service's answers and tasks look like to a real user of the API.

Use it with the `loopback_only` fixture (conftest.py): requests honours proxy variables.
"""

from __future__ import annotations

from typing import Any

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdksms.v3 import SmsClient

from batchsms.simulator import SimulatorHandle

AK, SK = "SDKTESTAK000001", "sdk-test-secret-key"
PROJECT_ID = "0123456789abcdef0123456789abcdef"  # given, so the SDK never asks IAM for one


def sdk_client(sim: SimulatorHandle, sk: str = SK) -> Any:
    config = HttpConfig.get_default_config()
    config.timeout = (3, 10)
    credentials = BasicCredentials(AK, sk, PROJECT_ID)
    return (SmsClient.new_builder().with_credentials(credentials).with_endpoints([sim.url])
            .with_http_config(config).build())
