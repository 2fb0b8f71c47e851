"""A real forward proxy for tests: tinyproxy on 127.0.0.1 asking for a user and password.

`tinyproxy_running(tmp_path, user, password)` starts it (skipping the test, saying why, where
tinyproxy is not installed; `.ci/run` installs it as root) and yields its `host:port`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TINYPROXY = shutil.which("tinyproxy")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tinyproxy_running(work: Path, user: str, password: str) -> Iterator[str]:
    """tinyproxy on loopback with Basic authentication; yields its `host:port`."""
    if TINYPROXY is None:
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy; .ci/run does)")
    port = _free_port()
    as_root = "User nobody\nGroup nogroup\n" if os.getuid() == 0 else ""
    conf = work / "tinyproxy.conf"
    conf.write_text(f"{as_root}Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\n"
                    f"Allow 127.0.0.1\nBasicAuth {user} {password}\nLogLevel Info\n"
                    f"LogFile \"{work / 'tinyproxy.log'}\"\n")
    work.chmod(0o777)  # the log, written by `nobody` when run as root
    process = subprocess.Popen([TINYPROXY, "-d", "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("tinyproxy did not start")
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
