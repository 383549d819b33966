"""The benchmarks' shared output: a ' | '-separated table on stdout and {"threads": 1, "rows": ...} JSON."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def print_rows(rows: list[dict]) -> None:
    """Print the rows under the union of their keys (first-seen order; a missing cell is empty)."""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in cols))


def write_rows(name: str, rows: list[dict]) -> Path:
    """Write results/NAME.json with the rows (1-thread measurements) and say where."""
    out = RESULTS / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"threads": 1, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return out
