"""Wall time of a workflow run and its breakdown by stage and by rule, from its Snakemake log.

Usage:
    python tools/run_breakdown.py [LOG] [--cores N] [--tsv OUT.tsv]

LOG defaults to the newest ``.snakemake/log/*.snakemake.log`` of the current directory (the run
just made, e.g. by ``make run``). Stages are the rule files of ``workflow/rules/`` (data, train,
decode, explain, analyse, paper). Prints Markdown; ``--tsv`` also writes one row per job. See
``caspes.report.runtime`` for what each figure means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from caspes.report.runtime import breakdown_markdown, job_table, parse_snakemake_log, rule_stages

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "log", nargs="?", type=Path, help="Snakemake log (default: the newest in .snakemake/log)"
    )
    parser.add_argument(
        "--cores", type=int, default=None, help="cores of the run, for the share of busy cores"
    )
    parser.add_argument(
        "--rules", type=Path, default=ROOT / "workflow" / "rules", help="folder of the .smk files"
    )
    parser.add_argument("--tsv", type=Path, default=None, help="also write one row per job here")
    args = parser.parse_args(argv)
    log = args.log
    if log is None:
        logs = sorted(Path(".snakemake/log").glob("*.snakemake.log"))
        if not logs:
            print("run_breakdown: no .snakemake/log/*.snakemake.log here; name the log", file=sys.stderr)
            return 2
        log = logs[-1]
    try:
        table = job_table(parse_snakemake_log(log), rule_stages(args.rules))
    except (OSError, ValueError) as err:
        print(f"run_breakdown: {err}", file=sys.stderr)
        return 2
    print(f"log: {log}")
    print(breakdown_markdown(table, args.cores), end="")
    if args.tsv is not None:
        table.to_csv(args.tsv, sep="\t", index=False, float_format="%.3f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
