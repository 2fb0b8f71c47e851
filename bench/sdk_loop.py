"""The official SDK's own client as a baseline: `SmsClient.update_task` from C threads.

AK/SK-signed, like `batchsms run` with AK/SK, against the same server. The SDK is synchronous
(requests), so concurrency is C threads sharing one client (its connection pool sized to C).
Prints one JSON object: requests, seconds, requests/s.

    python bench/sdk_loop.py URL N C
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdksms.v3 import PutTaskReq, SmsClient, UpdateTaskRequest


def main(url: str, n: int, concurrency: int) -> None:
    config = HttpConfig.get_default_config()
    config.pool_connections = config.pool_maxsize = concurrency
    config.retry_times = 0
    client = (SmsClient.new_builder()
              .with_credentials(BasicCredentials("BENCHAK", "bench-sk", "0" * 32))
              .with_endpoints([url]).with_http_config(config).build())

    def one(i: int) -> None:
        client.update_task(UpdateTaskRequest(task_id=f"sdk-{i}",
                                             body=PutTaskReq(speed_limit=i % 1001)))

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    seconds = time.perf_counter() - start
    print(orjson.dumps({"requests": n, "seconds": seconds,
                        "requests_per_s": n / seconds}).decode())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
