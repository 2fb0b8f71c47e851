"""Output paths, checked before a command starts: never one of its inputs, and writable.

Every command that writes a file (`run --out`/`--metrics-file`, `validate --out`, `tasks --out`,
`report --failed-to`, the undo files) calls `check_output` once, up front, so a mistake is one
message naming the path and the cause, and exit 2 (docs/reference.md §4, §7), never a traceback
half-way.

"The same file" is decided by `os.stat` device and inode, not by names: a symlink, a hard link or
`./x` versus `x` is still the input. An output that does not exist yet cannot be an existing
input; two that do not exist yet (`--out` and `--metrics-file` of a first run) are the same file
when their paths resolve alike (`os.path.realpath`). `-` (standard output) is never checked; an
input `-` is standard input, compared by `fstat(0)`.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from batchsms.errors import UsageError

PathLike = str | os.PathLike[str]


def _identity(path: PathLike) -> tuple[int, int] | None:
    """(device, inode) of an existing file, following symlinks; None when there is none."""
    try:
        st = os.fstat(sys.stdin.fileno()) if str(path) == "-" else os.stat(path)
    except (OSError, ValueError):  # ValueError: stdin closed or replaced without a descriptor
        return None
    return st.st_dev, st.st_ino


def _same_file(output: PathLike, target: tuple[int, int] | None, path: PathLike) -> bool:
    """Whether `path` is the file `output` (of identity `target`) is or will be."""
    identity = _identity(path)
    if target is not None or identity is not None:
        return target == identity  # one that exists is not one that does not
    # neither exists yet (an output given as an input of a later one, such as --out for
    # --metrics-file): the same file once created if the names resolve alike
    return str(path) != "-" and os.path.realpath(output) == os.path.realpath(path)


def refuse_input_as_output(option: str, output: PathLike,
                           inputs: Iterable[tuple[str, PathLike | None]]) -> None:
    """UsageError when `output` is the same file as one of `inputs` ((what, path) pairs)."""
    if str(output) == "-":
        return
    target = _identity(output)
    for what, path in inputs:
        if path is not None and _same_file(output, target, path):
            raise UsageError(f"{option} {str(output)!r} is the same file as {what} "
                             f"{str(path)!r}: an output must never be an input; "
                             f"give {option} another path")


def check_writable(option: str, output: PathLike) -> None:
    """UsageError naming `output` and the cause when it could not be created or written."""
    if str(output) == "-":
        return
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"{option} {str(path)!r}: is a directory")
    directory = path.parent
    try:
        mode = os.stat(directory).st_mode
    except OSError as exc:
        raise UsageError(f"{option} {str(path)!r}: cannot use directory {str(directory)!r}: "
                         f"{exc.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise UsageError(f"{option} {str(path)!r}: {str(directory)!r} is not a directory")
    target = path if path.exists() else directory
    if not os.access(target, os.W_OK | (os.X_OK if target is directory else 0)):
        # access(2) says EROFS for a read-only mount even to root; otherwise it is permissions
        cause = "read-only file system" if _read_only(target) else "permission denied"
        raise UsageError(f"{option} {str(path)!r}: cannot write {str(target)!r}: {cause}")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError as exc:
        return exc.errno == errno.EROFS


def check_output(option: str, output: PathLike | None,
                 inputs: Iterable[tuple[str, PathLike | None]] = ()) -> None:
    """Both checks: `output` is not an input, and it can be written. None is no output."""
    if output is None:
        return
    refuse_input_as_output(option, output, inputs)
    check_writable(option, output)
