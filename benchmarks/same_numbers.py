"""Did a refactor change nothing? Two quick demos' `comparison.json`, compared number by number.

    DATAENGINE_HOME=/tmp/before .venv/bin/dataengine demo --quick     # on the commit before the change
    DATAENGINE_HOME=/tmp/after  .venv/bin/dataengine demo --quick     # on the change
    .venv/bin/python benchmarks/same_numbers.py /tmp/before /tmp/after

Every numeric leaf of the newest quick demo report under each data home is compared exactly, except wall times
(the quick demo is deterministic on one machine; exact digits differ between CPUs). Exits 1 when any differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SKIPPED = ("minutes", "wall time", "seconds")


def newest_report(home: str) -> Path:
    found = sorted(Path(home).glob("demo/quick-*/reports/*/comparison.json"))
    if not found:
        raise SystemExit(f"no quick demo report under {home}/demo/quick-*/reports/")
    return found[-1]


def numbers(value, path: str = "") -> dict[str, float]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{path}/{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in numbers(item, f"{path}[{i}]").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {path: value}
    return {}


def main(before: str, after: str) -> int:
    reports = newest_report(before), newest_report(after)
    a, b = (numbers(json.loads(r.read_text())) for r in reports)
    keys = [k for k in sorted(set(a) | set(b)) if not any(s in k for s in SKIPPED)]
    # A number the change adds (a new fact, a new metric) is listed, not a failure; one it loses or alters is.
    added = [k for k in keys if k not in a]
    differ = [k for k in keys if k in a and a[k] != b.get(k)]
    print(f"{reports[0]}\n{reports[1]}\n{len(keys) - len(added)} numbers compared, {len(differ)} differ"
          + (f"; {len(added)} added" if added else ""))
    for key in differ[:20]:
        print(f"  {key}: {a.get(key)} -> {b.get(key)}")
    for key in added[:20]:
        print(f"  added {key}: {b[key]}")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
