"""Where a workflow run spent its time: the jobs of a Snakemake log, per rule and per stage.

A Snakemake log (``.snakemake/log/<start>.snakemake.log``) stamps every job when it starts
(``[<date>]`` followed by ``rule <name>:`` or ``localrule <name>:`` and ``jobid: <n>``) and when it
finishes (``[<date>]`` followed by ``Finished jobid: <n> (Rule: <name>)``). From these stamps:

- the run's wall time is the first start to the last finish;
- a job's seconds are its finish minus its start (to the second: Snakemake prints whole seconds);
- a stage is the rule file that defines the rule (``workflow/rules/<stage>.smk``), and its window is
  its first job's start to its last job's finish, as minutes from the start of the run. Stages
  overlap (saliency starts while the last model trains), so the windows do not add up to the wall
  time; the job-seconds divided by the cores do, less the time cores were idle.

Jobs that started but never finished (a killed or failed run) are counted as ``unfinished`` and left
out of the sums. Per-job resource figures (peak memory, CPU time) are in the rules'
``benchmarks/`` files; this module reads only the log, so it works for any run with a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
_START = re.compile(r"^(?:local)?rule (\w+):$")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
_RULE_DEF = re.compile(r"^\s*rule (\w+):")


@dataclass(frozen=True)
class Job:
    """One job of a run: its rule, Snakemake job id and start/finish times (finish None if never)."""

    jobid: int
    rule: str
    start: datetime
    end: datetime | None


def _parse_stamp(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def parse_snakemake_log(path: str | Path) -> list[Job]:
    """The jobs of one Snakemake log, in the order they started.

    Raises ValueError naming the file and line when a job's start has no job id, a job finishes
    that never started, or the log holds no job at all.
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    started: dict[int, tuple[str, datetime]] = {}
    finished: dict[int, datetime] = {}
    order: list[int] = []
    stamp: datetime | None = None
    pending: tuple[str, datetime, int] | None = None  # rule, start, line number: waits for its jobid
    for number, line in enumerate(lines, start=1):
        if m := _STAMP.match(line):
            stamp = _parse_stamp(m.group(1))
            continue
        if pending is not None:
            if m := _JOBID.match(line):
                jobid = int(m.group(1))
                started[jobid] = pending[:2]
                order.append(jobid)
                pending = None
                continue
            if not line.startswith(" "):
                raise ValueError(f"{path}:{pending[2]}: job of rule {pending[0]!r} has no 'jobid:' line")
        if stamp is not None and (m := _START.match(line)):
            pending = (m.group(1), stamp, number)
        elif stamp is not None and (m := _FINISH.match(line)):
            jobid = int(m.group(1))
            if jobid not in started:
                raise ValueError(f"{path}:{number}: job {jobid} ({m.group(2)}) finishes but never started")
            finished[jobid] = stamp
    if pending is not None:
        raise ValueError(f"{path}:{pending[2]}: job of rule {pending[0]!r} has no 'jobid:' line")
    if not order:
        raise ValueError(f"{path}: no job in this Snakemake log (was it a dry-run, or nothing to do?)")
    return [Job(j, started[j][0], started[j][1], finished.get(j)) for j in order]


def rule_stages(rules_dir: str | Path) -> dict[str, str]:
    """Rule name -> stage, the stage being the name of the ``.smk`` file that defines the rule."""
    stages: dict[str, str] = {}
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        for line in smk.read_text(encoding="utf-8").splitlines():
            if m := _RULE_DEF.match(line):
                stages[m.group(1)] = smk.stem
    if not stages:
        raise ValueError(f"{rules_dir}: no 'rule <name>:' in any .smk file")
    return stages


def job_table(jobs: list[Job], stages: dict[str, str]) -> pd.DataFrame:
    """One row per job: jobid, rule, stage, start/end minutes from the run's start, seconds.

    Rules defined outside ``stages`` (the Snakefile's own ``all``) get the stage ``workflow``.
    """
    t0 = min(job.start for job in jobs)
    rows = []
    for job in jobs:
        end = None if job.end is None else (job.end - t0).total_seconds()
        start = (job.start - t0).total_seconds()
        rows.append(
            {
                "jobid": job.jobid,
                "rule": job.rule,
                "stage": stages.get(job.rule, "workflow"),
                "start_min": start / 60,
                "end_min": None if end is None else end / 60,
                "seconds": None if end is None else end - start,
            }
        )
    return pd.DataFrame(rows)


def breakdown(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per ``by`` (``"stage"`` or ``"rule"``): jobs, unfinished jobs, job-seconds, the longest job,
    and the window (first start, last finish) in minutes from the run's start; in order of start."""
    groups = []
    for key, part in table.groupby(by, sort=False):
        done = part[part["seconds"].notna()]
        groups.append(
            {
                by: key,
                "jobs": len(part),
                "unfinished": int(part["seconds"].isna().sum()),
                "job_seconds": float(done["seconds"].sum()),
                "longest_job_s": float(done["seconds"].max()) if len(done) else float("nan"),
                "first_start_min": float(part["start_min"].min()),
                "last_end_min": float(done["end_min"].max()) if len(done) else float("nan"),
            }
        )
    return pd.DataFrame(groups).sort_values("first_start_min", kind="stable").reset_index(drop=True)


def wall_seconds(table: pd.DataFrame) -> float:
    """First start to last finish of the finished jobs, in seconds."""
    return float(table["end_min"].max() * 60 - table["start_min"].min() * 60)


def format_minutes(seconds: float) -> str:
    """``1 h 02 min 05 s`` / ``12 min 05 s`` / ``45 s``; ``-`` for NaN (no finished job)."""
    if seconds != seconds:
        return "-"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def breakdown_markdown(table: pd.DataFrame, cores: int | None = None) -> str:
    """The run's wall time, then a Markdown table per stage and one per rule."""
    wall = wall_seconds(table)
    busy = float(table["seconds"].sum())
    if not busy:  # killed during its first jobs: nothing finished, so no wall time or shares
        lines = ["wall time: - (no job of this log finished)"]
    else:
        lines = [f"wall time (first job start to last job finish): {format_minutes(wall)} ({wall:.0f} s)"]
    if cores and busy:
        lines.append(
            f"job time: {format_minutes(busy)} on {cores} cores = {busy / (cores * wall):.0%} of the cores' wall time"
        )
    for by in ("stage", "rule"):
        part = breakdown(table, by)
        lines += [
            "",
            f"| {by} | jobs | job time | share of job time | longest job | window (min from start) |",
            "|---|---:|---:|---:|---:|---|",
        ]
        for row in part.itertuples(index=False):
            unfinished = f" ({row.unfinished} unfinished)" if row.unfinished else ""
            lines.append(
                f"| {getattr(row, by)} | {row.jobs}{unfinished} | {format_minutes(row.job_seconds)} | "
                f"{f'{row.job_seconds / busy:.1%}' if busy else '-'} | {format_minutes(row.longest_job_s)} | "
                f"{row.first_start_min:.1f}-{'' if row.unfinished else f'{row.last_end_min:.1f}'} |"
            )
    return "\n".join(lines) + "\n"
