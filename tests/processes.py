"""`batchsms` as a child process, for the tests that cross the CLI boundary.

`clean_env(extra)`: the environment a child gets: this one without any BATCHSMS_*,
HUAWEICLOUD_SDK_*, CLOUD_SDK_* or SSL_CERT_* variable (a developer's own credentials or CA must
never leak into a test), HOME pointing nowhere (no ~/.batchsms file is found by accident), then
`extra`. `batchsms(*args)` runs a command to its end; `start_batchsms(*args)` starts one (for
signals, kills and streams), `kill_when(ready, *args)` SIGKILLs one once `ready()` holds;
`simulator_process(*args)` serves the simulator from a child, for
tests that need it to read its expected credentials from its own environment, as a user's
simulator would. `InProcess` (the `cli` and `here` fixtures) has `batchsms()`'s shape but calls
`batchsms.cli.main` in the test process: for the tests where the process boundary is not the
point, it saves an interpreter start-up (~0.45 s of CPU) per command.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, overload

import structlog

from batchsms.cli import main

BATCHSMS = (sys.executable, "-m", "batchsms")
FOREIGN = ("BATCHSMS_", "HUAWEICLOUD_SDK_", "CLOUD_SDK_", "SSL_CERT_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    # Never 169.254.169.254 (the ECS metadata service, §6 source 5): a closed loopback port.
    env.update(HOME="/nonexistent", PYTHONDONTWRITEBYTECODE="1",
               BATCHSMS_METADATA_ENDPOINT="http://127.0.0.1:9")
    env.update(extra or {})
    return env


# A fresh parent whose only child is the command: its RUSAGE_CHILDREN is the command's peak.
_PEAK_RSS = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:]).returncode
print(f"peak_rss_kib={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


@overload
def batchsms(*args: str, env: Mapping[str, str] | None = ..., text: Literal[False] = ...,
             timeout: float = ..., peak_rss: bool = ...,
             **kwargs: Any) -> subprocess.CompletedProcess[bytes]: ...


@overload
def batchsms(*args: str, env: Mapping[str, str] | None = ..., text: Literal[True],
             timeout: float = ..., peak_rss: bool = ...,
             **kwargs: Any) -> subprocess.CompletedProcess[str]: ...


def batchsms(*args: str, env: Mapping[str, str] | None = None, text: bool = False,
             timeout: float = 120, peak_rss: bool = False,
             **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """Run `batchsms ARGS` in `clean_env(env)` to its end; stdout and stderr are captured
    (unless either is redirected), stdin is empty unless `input` or `stdin` is given; other
    keywords go to `subprocess.run`.
    With `peak_rss`, stderr ends with the command's peak RSS: read it with `peak_rss_kib`."""
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    if "stdout" not in kwargs and "stderr" not in kwargs:
        kwargs["capture_output"] = True
    command = [*BATCHSMS, *args]
    if peak_rss:
        command = [sys.executable, "-c", _PEAK_RSS, *command]
    return subprocess.run(command, env=clean_env(env), text=text, timeout=timeout, check=False,
                          **kwargs)


def peak_rss_kib(result: subprocess.CompletedProcess[Any]) -> int:
    """The peak RSS of a command run with `batchsms(..., peak_rss=True)`, in KiB."""
    stderr = result.stderr if isinstance(result.stderr, bytes) else result.stderr.encode()
    return int(stderr.rsplit(b"peak_rss_kib=", 1)[1].split()[0])


def start_batchsms(*args: str, env: Mapping[str, str] | None = None,
                   stdout: Any = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL,
                   **kwargs: Any) -> subprocess.Popen[bytes]:
    """Start `batchsms ARGS` in `clean_env(env)`; output is dropped unless redirected."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([*BATCHSMS, *args], env=clean_env(env), stdout=stdout,
                            stderr=stderr, **kwargs)


def kill_when(ready: Callable[[], bool], *args: str, env: Mapping[str, str] | None = None,
              timeout: float = 60.0) -> None:
    """Start `batchsms ARGS` and SIGKILL it as soon as `ready()` holds (or after `timeout`
    seconds): a run cut off half-way, with no chance to write a last record."""
    child = start_batchsms(*args, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not ready() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


@dataclass
class SimulatorProcess:
    """A simulator in a child process. `stdout` (after the `listening on` line) and `stderr`
    hold the rest of what it wrote once it has exited."""

    url: str
    process: subprocess.Popen[Any]
    first_line: str
    stdout: Any = None
    stderr: Any = None


@contextmanager
def simulator_process(*args: str, env: Mapping[str, str] | None = None,
                      module: str = "batchsms", text: bool = False,
                      **kwargs: Any) -> Iterator[SimulatorProcess]:
    """`python -m batchsms simulator --port 0 ARGS` (or `-m batchsms.simulator` as `module`) in
    `clean_env(env)`, once it says it is listening; on exit, SIGTERM if still running, and its
    output collected."""
    command = ["simulator", "--port", "0"] if module == "batchsms" else ["--port", "0"]
    proc = subprocess.Popen([sys.executable, "-m", module, *command, *args],
                            env=clean_env(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text, **kwargs)
    sim = None
    try:
        assert proc.stdout is not None
        raw = proc.stdout.readline()
        line = raw if isinstance(raw, str) else raw.decode()
        assert line.startswith("listening on http://127.0.0.1:"), line
        sim = SimulatorProcess(line.split()[-1], proc, line)
        yield sim
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        if sim is not None:
            sim.stdout, sim.stderr = out, err


class InProcess:
    """`batchsms(*args)`'s shape, but `batchsms.cli.main(args)` called in this process: no
    interpreter start-up (~0.45 s of CPU each). For the tests where the process boundary is not
    the point (exit codes, messages, outcomes, options); signals, kills, `python -m`, pipes,
    peak RSS and the like keep a real child.

    Each call sees `clean_env(env)` (the foreign variables removed, HOME nowhere) and `cwd`,
    reads `input` (or nothing) from a real pipe on its stdin, and gets back what it wrote to
    descriptors 1 and 2 (captured with `capfdbinary`, so logs, progress and summaries are seen
    as a child's would be). Whatever `main` leaves behind (structlog's configuration, the
    descriptor limit, the environment, the directory) is put back after each call, so
    consecutive calls in one worker do not see each other. Used through the `cli` fixture."""

    def __init__(self, monkeypatch: Any, capfdbinary: Any) -> None:
        self._monkeypatch = monkeypatch
        self._capture = capfdbinary

    @overload
    def __call__(self, *args: str, env: Mapping[str, str] | None = ...,
                 text: Literal[False] = ..., input: bytes | str | None = ...,
                 cwd: str | os.PathLike[str] | None = ...) -> subprocess.CompletedProcess[bytes]:
        ...

    @overload
    def __call__(self, *args: str, env: Mapping[str, str] | None = ..., text: Literal[True],
                 input: bytes | str | None = ...,
                 cwd: str | os.PathLike[str] | None = ...) -> subprocess.CompletedProcess[str]:
        ...

    def __call__(self, *args: str, env: Mapping[str, str] | None = None, text: bool = False,
                 input: bytes | str | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[Any]:
        data = input.encode() if isinstance(input, str) else (input or b"")
        saved_log = structlog.get_config()
        saved_files = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._capture.readouterr()  # what the test printed before is not the command's
        read_end, write_end = os.pipe()
        writer = threading.Thread(target=_feed, args=(write_end, data), daemon=True)
        writer.start()
        stdin = io.TextIOWrapper(open(read_end, "rb"))  # noqa: SIM115 - closed below
        try:
            with self._monkeypatch.context() as patch:
                for name in os.environ:
                    if name.startswith(FOREIGN):
                        patch.delenv(name)
                for name, value in clean_env(env).items():
                    if os.environ.get(name) != value:
                        patch.setenv(name, value)
                if cwd is not None:
                    patch.chdir(cwd)
                patch.setattr(sys, "stdin", stdin)
                try:
                    code: Any = main(list(args))
                except SystemExit as exc:
                    code = exc.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
        finally:
            stdin.close()
            writer.join()
            structlog.configure(**saved_log)
            resource.setrlimit(resource.RLIMIT_NOFILE, saved_files)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = self._capture.readouterr()
        if text:
            return subprocess.CompletedProcess(list(args), code or 0, out.decode(), err.decode())
        return subprocess.CompletedProcess(list(args), code or 0, out, err)


Here = Callable[..., subprocess.CompletedProcess[str]]
"""The `here` fixture's type: `InProcess` with text output."""


def _feed(descriptor: int, data: bytes) -> None:
    """Write a command's standard input and close it; a reader that stops early is no error."""
    try:
        with open(descriptor, "wb") as pipe:
            pipe.write(data)
    except BrokenPipeError:
        pass
