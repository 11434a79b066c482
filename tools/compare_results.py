"""Compare two result folders of the same study, file by file (a refactor must not change results).

Usage:
    python tools/compare_results.py BEFORE AFTER [--all]

BEFORE and AFTER are working directories of two runs (each holding ``results/``). The files that
must agree are the paper's tables (``results/paper/*.csv``), ``results/quality.tsv``,
``results/explanations.tsv``, every cross-attention store (``xattn.zip``) and every saliency store
(``saliency/*.zip``, shards included). Tables are compared cell by cell after dropping the columns
that hold measured time (``seconds*``, ``*_seconds``, ``*_s``, ``*per_second``); stores byte for
byte. Every other file under ``results/`` is compared too (tables without their time columns,
checkpoints without their ``wall_s`` entry, everything else byte for byte) and listed when it
differs; ``--all`` makes those count as well.
Exit status: 0 when every file that counts is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import sys
from pathlib import Path

REQUIRED = [
    "results/paper/*.csv",
    "results/quality.tsv",
    "results/explanations.tsv",
    "results/*/*/*/xattn.zip",
    "results/*/*/*/saliency/*.zip",
    "results/*/*/*/saliency/*.shards/*.zip",
]


def is_seconds_column(name: str) -> bool:
    """Columns of measured wall-clock time (or rates from it), which differ between any two runs."""
    return name.startswith("seconds") or name.endswith(("_seconds", "_s", "per_second"))


def table_without_seconds(path: Path) -> list[list[str]]:
    """Rows of a CSV/TSV file (header first) with the measured-seconds columns left out."""
    delimiter = "\t" if path.suffix == ".tsv" else ","
    rows = list(csv.reader(io.StringIO(path.read_text()), delimiter=delimiter))
    if not rows:
        return rows
    keep = [i for i, name in enumerate(rows[0]) if not is_seconds_column(name)]
    return [[row[i] if i < len(row) else "" for i in keep] for row in rows]


def same_checkpoint(a: Path, b: Path) -> bool:
    """Two torch checkpoints hold the same objects, apart from the measured ``wall_s``."""
    import torch  # only needed for checkpoints; the rest of this tool is standard library

    def equal(x: object, y: object) -> bool:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and torch.equal(x, y)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(equal(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            return type(x) is type(y) and len(x) == len(y) and all(map(equal, x, y))
        return type(x) is type(y) and x == y

    ca, cb = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
    for checkpoint in (ca, cb):
        if isinstance(checkpoint, dict):
            checkpoint.pop("wall_s", None)
    return equal(ca, cb)


def same(a: Path, b: Path) -> bool:
    if a.suffix in (".csv", ".tsv"):
        return table_without_seconds(a) == table_without_seconds(b)
    if a.read_bytes() == b.read_bytes():
        return True
    return a.suffix == ".pt" and same_checkpoint(a, b)


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "results").rglob("*") if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--all", action="store_true", help="every file under results/ must agree")
    args = parser.parse_args(argv)
    for root in (args.before, args.after):
        if not (root / "results").is_dir():
            parser.error(f"{root}: no results/ folder")

    before, after = files_under(args.before), files_under(args.after)
    required = {f for f in before | after if any(fnmatch.fnmatch(f, pattern) for pattern in REQUIRED)}
    counted = before | after if args.all else required
    bad: list[str] = []
    other_differ: list[str] = []
    identical = {"required": 0, "other": 0}
    for rel in sorted(before | after):
        kind = "required" if rel in required else "other"
        if rel not in before or rel not in after:
            status = f"only in {'after' if rel not in before else 'before'}"
        elif same(args.before / rel, args.after / rel):
            identical[kind] += 1
            continue
        else:
            status = "differs"
        (bad if rel in counted else other_differ).append(f"{status}: {rel}")

    print(f"required files: {len(required)}, identical: {identical['required']}")
    print(f"other files: {len(before | after) - len(required)}, identical: {identical['other']}")
    for line in other_differ:
        print(f"  (not counted) {line}")
    for line in bad:
        print(f"  {line}")
    print("identical" if not bad else f"{len(bad)} file(s) differ")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
