"""The simulator as a child process (`batchsms simulator --port 0`), for tests that need it to
read its expected credentials from its own environment, as a user's simulator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def simulator_process(*args: str, **env: str) -> Iterator[str]:
    """Start it with `args` and `env` added to a BATCHSMS_-free environment; yield its URL."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHSMS_")}
    full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "batchsms", "simulator", "--port", "0",
                             *args], env=full_env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on http://"), line
    try:
        yield line.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        proc.stdout.close()
