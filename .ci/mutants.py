"""Break the code on purpose and name the tests that catch each break (issue 13).

A suite is only as good as what it catches. Each mutant below is one exact text replacement in one
source file, of the kind a tired refactoring makes: a limit off, a signature detail dropped, a
bucket that forgets its cap, a journal that stops writing through. For each, this script applies
it in place, runs the default suite (the README's command, plus ``-rf`` to list failures), records
the tests that failed, and puts the file back, whatever happens.

Run it from a checkout whose venv has the package installed editable (so the subprocess tests run
the broken code too), with a clean working tree:

    .venv/bin/python .ci/mutants.py              # every mutant, ~1 min each
    .venv/bin/python .ci/mutants.py bucket-cap   # one, by name
    .venv/bin/python .ci/mutants.py --list

Exit status 1 if a mutant survives (no test failed), 0 otherwise. Not part of ``.ci/run``: a run
of every mutant takes longer than CI's budget; the figures are in the README's Development section.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    old: str
    new: str


MUTANTS = (
    Mutant("schema-limit", "speed_limit's maximum 1000 becomes 10000 (Table 3)",
           "batchsms/schema.py", '"speed_limit": integer(1000),', '"speed_limit": integer(10000),'),
    Mutant("schema-type", "exist_server becomes a string instead of a boolean (Table 3)",
           "batchsms/schema.py", '"exist_server": BOOLEAN,', '"exist_server": string(255),'),
    Mutant("signer-uri", "the canonical URI loses the SDK's trailing slash",
           "batchsms/signing.py", 'return uri if uri.endswith("/") else uri + "/"', "return uri"),
    Mutant("signer-query", "the canonical query is no longer sorted",
           "batchsms/signing.py", "for k, v in sorted(query))", "for k, v in query)"),
    Mutant("bucket-cap", "the token bucket refills past its burst",
           "batchsms/limiter.py",
           "self._tokens = min(self._burst, self._tokens + elapsed * self._rate)",
           "self._tokens = self._tokens + elapsed * self._rate"),
    Mutant("journal-through", "a sent line's record is no longer written through at once",
           "batchsms/outcomes.py", "        if durable:\n            self.flush()",
           "        if False:\n            self.flush()"),
    Mutant("journal-resume", "resume treats a failed line as done",
           "batchsms/resume.py", "                    status == succeeded\n",
           "                    status in (succeeded, Status.FAILED.value)\n"),
)

FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")


def run_suite() -> tuple[list[str], float, str]:
    start = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    failed = sorted({m.group(1) for m in map(FAILED.match, result.stdout.splitlines()) if m})
    tail = result.stdout.strip().splitlines()[-1:] or [result.stderr.strip()[-200:]]
    return failed, time.monotonic() - start, tail[0]


def try_mutant(mutant: Mutant) -> list[str]:
    path = ROOT / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.name}: the text to replace is not found once in {mutant.path}"
                         " (the code moved: update the mutant)")
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        failed, seconds, tail = run_suite()
    finally:
        path.write_text(original)
    verdict = f"caught by {len(failed)}" if failed else "SURVIVED"
    print(f"\n{mutant.name}: {mutant.what}\n  {verdict} ({seconds:.0f} s; {tail})")
    for name in failed:
        print(f"    {name}")
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--baseline", action="store_true",
                        help="first run the suite unbroken, to see what fails anyway (flakes)")
    args = parser.parse_args()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:16} {m.path:24} {m.what}")
        return 0
    unknown = set(args.names) - {m.name for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    chosen = [m for m in MUTANTS if not args.names or m.name in args.names]
    if args.baseline:
        failed, seconds, tail = run_suite()
        print(f"baseline: {len(failed)} failed ({seconds:.0f} s; {tail})", *failed, sep="\n    ")
    survivors = [m.name for m in chosen if not try_mutant(m)]
    print(f"\n{len(chosen) - len(survivors)} of {len(chosen)} mutants caught"
          + (f"; survived: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
