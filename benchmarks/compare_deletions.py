"""Compare two runs' deletions.csv: the same deletions and labels, numbers equal to a tolerance.

Command (e.g. before and after a refactor, each run folder from `jaxrecon run --out ...`):

    python benchmarks/compare_deletions.py BEFORE_DIR AFTER_DIR [--rtol 1e-6]

Exact: the columns and their order, `train_index`, `pool_index`, `true_label` and every
`<attack>_label` / `<attack>_label_correct`. Every other column agrees to `rtol` relative, or
`rtol` absolute where the value is below 1 in magnitude. Prints one line per run pair and the
largest difference per column; exits 1 when they disagree.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys

EXACT = ("train_index", "pool_index", "true_label")


def read(folder: str) -> list[dict[str, str]]:
    with open(os.path.join(folder, "deletions.csv")) as f:
        return list(csv.DictReader(f))


def compare(before: list[dict[str, str]], after: list[dict[str, str]], rtol: float) -> list[str]:
    """The disagreements between two deletions.csv tables (empty when they agree)."""
    problems = []
    if not before or not after:
        return ["a table is empty"]
    if list(before[0]) != list(after[0]):
        return [f"columns differ: {list(before[0])} vs {list(after[0])}"]
    if len(before) != len(after):
        return [f"{len(before)} rows vs {len(after)}"]
    for column in before[0]:
        exact = column in EXACT or column.endswith(("_label", "_label_correct"))
        worst = 0.0
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            x, y = a[column], b[column]
            if exact or x == "" or y == "":
                if x != y:
                    problems.append(f"row {i} {column}: {x!r} vs {y!r}")
                continue
            u, v = float(x), float(y)
            if math.isnan(u) and math.isnan(v):
                continue
            diff = abs(u - v) / max(abs(u), 1.0)
            worst = max(worst, diff)
            if not diff <= rtol:
                problems.append(f"row {i} {column}: {u!r} vs {v!r} (difference {diff:.2e})")
        if not exact:
            print(f"  {column:<28} largest difference {worst:.2e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rtol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    problems = compare(read(args.before), read(args.after), args.rtol)
    for line in problems[:20]:
        print(line)
    verdict = "agree" if not problems else f"DISAGREE ({len(problems)} cells)"
    print(f"{args.before} vs {args.after}: {verdict}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
