"""Headless Chromium, for the tests that look at a page as a person would (docs/reference.md §13).

`open_page(page, tmp_path, *flags)` opens a file in the Debian package `chromium` (installed by
`.ci/run`) with a throw-away profile and no network beyond the file, and returns the finished
process: `--dump-dom` puts the rendered DOM on its stdout, `--screenshot=PNG` writes a picture.
`console_messages(stderr)` is what the page logged (errors, CSP refusals). `chromium_only` skips
a test, saying why, when Chromium is missing, unless `BATCHSMS_REQUIRE_CHROMIUM` is set (then
the test fails instead). `screenshot(tmp_path, name, variable)` is where a test writes its
picture: `tmp_path/name`, or the path in the environment variable `variable`, for a person to
look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

chromium_only = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("BATCHSMS_REQUIRE_CHROMIUM"),
    reason="chromium is not installed (.ci/run installs the Debian package `chromium`)")


def open_page(page: Path, tmp_path: Path, *extra: str,
           height: int = 2000) -> subprocess.CompletedProcess[str]:
    """`page` opened in headless Chromium, 1280 px wide and `height` high, with `extra` flags."""
    assert CHROMIUM is not None, "BATCHSMS_REQUIRE_CHROMIUM is set, and chromium is missing"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
         "--v=0", f"--window-size=1280,{height}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=90, check=False,
        env={**os.environ, "HOME": str(tmp_path)})


def console_messages(stderr: str) -> list[str]:
    """What the page logged: Chromium's `INFO:CONSOLE` lines (errors, CSP refusals)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def screenshot(tmp_path: Path, name: str, variable: str) -> Path:
    """Where to write a screenshot: `$variable` when set (kept for a person), else in
    `tmp_path`."""
    return Path(os.environ.get(variable) or tmp_path / name)
