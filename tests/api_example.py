"""A script written from the README's "Python API" section, as a user would write it.

`tests/test_api.py` runs it against the simulator (inside `asyncio.run`, and from a worker
thread) and type-checks it with `mypy --strict` against the installed package (`py.typed`).
Run by hand: `python tests/api_example.py http://127.0.0.1:PORT TOKEN`.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence

import batchsms

LIST_SPEED = 200


def fleet_updates(count: int) -> list[dict[str, object]]:
    """A fleet-wide speed-limit change, one update per task."""
    return [{"task_id": f"api-list-{i:04d}", "body": {"speed_limit": LIST_SPEED},
             "ref": f"web-{i:04d}"} for i in range(count)]


async def arriving(count: int) -> AsyncIterator[dict[str, object]]:
    """Updates as they arrive (from a queue, a database cursor...): an async generator."""
    for i in range(count):
        await asyncio.sleep(0)
        yield {"task_id": f"api-gen-{i:04d}", "body": {"speed_limit": 300 + i}}


async def apply(endpoint: str, token: str, *, from_list: int = 500,
                from_generator: int = 100) -> dict[str, list[batchsms.Outcome]]:
    """Both kinds of updates through one client; every outcome, by source."""
    credentials = batchsms.TokenCredentials(token)
    async with batchsms.Client(endpoint, credentials=credentials, rate=0,
                               concurrency=32) as client:
        listed = [outcome async for outcome in client.run(fleet_updates(from_list))]
        generated = [outcome async for outcome in client.run(arriving(from_generator))]
    return {"list": listed, "generator": generated}


def main(argv: Sequence[str]) -> int:
    problems = batchsms.validate({"task_id": "t1", "body": {"speedlimit": 1}})
    for problem in problems:
        print(f"invalid: {problem.path}: {problem.message}")
    results = asyncio.run(apply(argv[0], argv[1]))
    for name, outcomes in results.items():
        counts = Counter(str(outcome.status) for outcome in outcomes)
        print(name, dict(counts))
    failed = [o.to_dict() for os_ in results.values() for o in os_ if o.status != "succeeded"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
