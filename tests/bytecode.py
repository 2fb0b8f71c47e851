"""Loaded before every other plugin (`-p tests.bytecode` in pyproject.toml's addopts): cache
rewritten bytecode even where PYTHONDONTWRITEBYTECODE is set, as on CI's machine.

pytest rewrites the asserts of the test modules and of every plugin it loads from an entry
point (xdist, anyio's, hypothesis's, pytest-timeout, pytest-cov: 41 modules), and saves the
result in `__pycache__` only if bytecode may be written. With the variable set, each of the
suite's processes (the controller and every worker) rewrote them all again: the test modules
~2.6 s of CPU a process (`pytest --collect-only -n 0`: 5.2 s of CPU, 2.6 s with the cache), the
plugins ~0.25 s. A read-only install is no harm: pytest then writes nothing and reads what is
there. The children the tests start keep the variable (`tests.processes.clean_env`); conftest
compiles batchsms for them once a session.
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = False
