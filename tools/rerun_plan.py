"""Which jobs a config change schedules in a finished study: one dry-run per overlay.

    python tools/rerun_plan.py WORKDIR [--snakefile Snakefile] [--configfile configs/ci.yaml]

Prints, for every overlay of ``OVERLAYS`` (a config key set to a new value on top of the
study's config file), the number of jobs ``snakemake -n`` schedules and their rules.  The
integration test (tests/integration/test_ci_study.py) asserts the same plans.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: (name, overlay) of the changes the README's "What reruns what" table describes.
OVERLAYS: list[tuple[str, dict]] = [
    ("nothing", {}),
    ("training.log_every: 7", {"training": {"log_every": 7}}),
    ("training.device: cpu", {"training": {"device": "cpu"}}),
    ("decoding.device / explain.device: cpu", {"decoding": {"device": "cpu"}, "explain": {"device": "cpu"}}),
    ("decoding.splits += train", {"decoding": {"splits": ["dev", "test", "train"]}}),
    ("models.base.stages.asr.max_steps: 12", {"models": {"base": {"stages": {"asr": {"max_steps": 12}}}}}),
    ("explain.input.n_masks: 40", {"explain": {"input": {"n_masks": 40}}}),
    ("explain.shards: 3", {"explain": {"shards": 3}}),
]


def planned_jobs(workdir: Path, overlay: dict, snakefile: Path, configfile: Path) -> dict[str, int]:
    """Rule -> number of jobs that ``snakemake -n`` schedules with ``overlay`` on ``configfile``."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(overlay, f)
    cmd = ["snakemake", "-s", str(snakefile), "-d", str(workdir), "-n", "--quiet", "rules",
           "--configfile", str(configfile), f.name]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    Path(f.name).unlink()
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    counts: dict[str, int] = {}
    in_stats = False
    for line in out.splitlines():
        if line.startswith("Job stats:"):
            in_stats = True
            continue
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if in_stats and m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path, help="folder of a finished study")
    ap.add_argument("--snakefile", type=Path, default=ROOT / "Snakefile")
    ap.add_argument("--configfile", type=Path, default=ROOT / "configs" / "ci.yaml")
    args = ap.parse_args(argv)
    print("| config change | jobs | rules |\n|---|---:|---|")
    for name, overlay in OVERLAYS:
        counts = planned_jobs(args.workdir, overlay, args.snakefile.resolve(), args.configfile.resolve())
        rules = ", ".join(f"{r} {n}" for r, n in sorted(counts.items()) if r != "all")
        print(f"| {name} | {sum(n for r, n in counts.items() if r != 'all')} | {rules or '-'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
