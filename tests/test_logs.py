"""Log output (logs.py): where log lines go, and what they never show."""

from __future__ import annotations

import io

import pytest
import structlog

from batchsms.commands import logs
from batchsms.transport.credentials import AkSkCredentials
from batchsms.transport.signing import Signer


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_an_exception_logged_with_exc_info_shows_no_local_secret(fmt: str) -> None:
    """A traceback is logged without the local variables of its frames (a signer's key)."""
    secret = "SKsecret-in-a-local-variable"
    buf = io.StringIO()
    logs.configure(fmt, buf)

    def sign(sk: str) -> None:
        signer = Signer(AkSkCredentials("AK", sk))  # noqa: F841 - a frame holding the secret
        raise ConnectionError("boom")

    try:
        sign(secret)
    except ConnectionError:
        structlog.get_logger("t").error("task.crashed", exc_info=True)
    assert "boom" in buf.getvalue()
    assert secret not in buf.getvalue()


def test_logs_follow_sys_stderr_so_the_progress_bar_can_route_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """rich replaces sys.stderr while the bar is shown; log lines must go through it."""
    logs.configure("json")
    later = io.StringIO()
    monkeypatch.setattr("sys.stderr", later)
    structlog.get_logger("t").info("run.started", run_id="x")
    assert '"event": "run.started"' in later.getvalue()
