"""The baseline for `batchsms run`: a bare aiohttp loop, same server, same concurrency.

No validation, no retries, no rate limit, no outcome file: N PUTs of the same small body with C
workers over one session. With `aksk` as the fourth argument every request is signed the way
`batchsms run` signs it (SDK-HMAC-SHA256 by `batchsms.transport.signing.Signer`, one `headers_for`
call per request, Host and User-Agent set as `SmsClient` sets them), so that the AK/SK
comparison (issue 22, goal 3) measures the rest of the run, not the signing. Prints one JSON
object: requests, seconds, requests/s.

    python bench/bare_loop.py URL N C [token|aksk]
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import orjson
from yarl import URL

from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.signing import Signer

BENCH_AK, BENCH_SK, BENCH_PROJECT = "BENCHAK", "bench-sk", "0" * 32
"""The key pair bench_run.py gives `batchsms run` for its AK/SK runs."""


async def main(url: str, n: int, concurrency: int, auth: str) -> None:
    body = b'{"speed_limit":200}'
    host = urlsplit(url).netloc
    plain = {"Host": host, "User-Agent": "bench", "Content-Type": "application/json;charset=UTF-8"}
    signer = (Signer(AkSkCredentials(BENCH_AK, BENCH_SK, BENCH_PROJECT)) if auth == "aksk"
              else None)
    token_headers = plain | {"X-Auth-Token": "bench"}
    counter = iter(range(n))
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for i in counter:
            path = f"/v3/tasks/t{i}"
            headers = (token_headers if signer is None else
                       signer.headers_for("PUT", host, path, (), plain, body, datetime.now(UTC)))
            async with session.put(URL(url + path, encoded=True), data=body,
                                   headers=headers) as resp:
                await resp.read()
                ok += resp.status == 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    if ok != n:
        raise SystemExit(f"bare loop: {n - ok} of {n} requests not answered 200")
    print(orjson.dumps({"requests": n, "ok": ok, "seconds": seconds,
                        "requests_per_s": n / seconds}).decode())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                     sys.argv[4] if len(sys.argv) > 4 else "token"))
