"""Print `name==floor` for every runtime dependency of pyproject.toml (its declared minimum).

Used by .ci/run as pip constraints, so the second test venv runs on the oldest versions the
package claims to support.
"""

import re
import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
for spec in project["dependencies"]:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)\s*", spec)
    if match is None:
        sys.exit(f"no plain '>=' floor in dependency {spec!r}: declare one")
    print(f"{match[1]}=={match[2]}")
