"""The baseline for `batchsms run`: a bare aiohttp loop, same server, same concurrency.

No validation, no retries, no rate limit, no outcome file, no signing: N PUTs of the same small
body with C workers over one session. Prints one JSON object: requests, seconds, requests/s.

    python bench/bare_loop.py URL N C
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp
import orjson


async def main(url: str, n: int, concurrency: int) -> None:
    body = b'{"speed_limit":200}'
    headers = {"Content-Type": "application/json;charset=UTF-8", "X-Auth-Token": "bench"}
    counter = iter(range(n))
    ok = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal ok
        for i in counter:
            async with session.put(f"{url}/v3/tasks/t{i}", data=body, headers=headers) as resp:
                await resp.read()
                ok += resp.status == 200

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    print(orjson.dumps({"requests": n, "ok": ok, "seconds": seconds,
                        "requests_per_s": n / seconds}).decode())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
