"""What every benchmark prints and writes: a table, and JSON rows of one shape.

A row is ``{"benchmark", "system", "config", "median_s", "ratio", ...}`` where
``ratio`` is ppl's time over the row's system's time on the same config;
benchmarks may add fields of their own.
"""

from __future__ import annotations

import json

FIELDS = ("benchmark", "system", "config", "median_s", "ratio")


def print_table(header: str, lines) -> None:
    print(header)
    print("-" * len(header))
    for line in lines:
        print(line)


def write_rows(path: str | None, rows: list[dict]) -> None:
    """Write ``rows`` as JSON to ``path`` (nothing when ``path`` is None)."""
    for row in rows:
        missing = [k for k in FIELDS if k not in row]
        if missing:
            raise ValueError(
                f"benchmark row {row!r:.120} lacks {missing}; every row needs {FIELDS}."
            )
    if path:
        with open(path, "w") as f:
            json.dump(rows, f, indent=2)
