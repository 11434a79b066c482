"""caspes.report.runtime: a run's wall time and its breakdown by stage and rule, from a Snakemake log."""

from __future__ import annotations

from pathlib import Path

import pytest

from caspes.report.runtime import (
    breakdown,
    breakdown_markdown,
    format_minutes,
    job_table,
    parse_snakemake_log,
    rule_stages,
    wall_seconds,
)

LOG = """\
Building DAG of jobs...
Job stats:
job      count
-----  -------
all          1
Select jobs to execute...
[Thu Dec  3 08:37:44 2026]
localrule synthesize_corpus:
    output: results/data/a.tsv
    jobid: 2
    threads: 2
Shell command: None
[Thu Dec  3 08:38:49 2026]
Finished jobid: 2 (Rule: synthesize_corpus)
1 of 4 steps (25%) done
[Thu Dec  3 08:38:49 2026]
rule train_model:
    input: results/data/a.tsv
    jobid: 7
[Thu Dec  3 08:38:49 2026]
rule train_model:
    input: results/data/a.tsv
    jobid: 9
[Thu Dec  3 09:08:49 2026]
Finished jobid: 9 (Rule: train_model)
[Thu Dec  3 09:18:49 2026]
Finished jobid: 7 (Rule: train_model)
[Thu Dec  3 09:18:50 2026]
rule explain_input:
    jobid: 11
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "data.smk").write_text(
        'if config["x"]:\n\n    rule synthesize_corpus:\n        output: "a"\n', encoding="utf-8"
    )
    (rules / "train.smk").write_text('rule train_model:\n    output: "b"\n', encoding="utf-8")
    (rules / "explain.smk").write_text('rule explain_input:\n    output: "c"\n', encoding="utf-8")
    return rules


def test_jobs_their_times_and_stages(tmp_path: Path, rules_dir: Path) -> None:
    log = tmp_path / "run.snakemake.log"
    log.write_text(LOG, encoding="utf-8")
    jobs = parse_snakemake_log(log)
    assert [(j.jobid, j.rule) for j in jobs] == [
        (2, "synthesize_corpus"),
        (7, "train_model"),
        (9, "train_model"),
        (11, "explain_input"),
    ]
    assert jobs[-1].end is None  # started, never finished
    stages = rule_stages(rules_dir)
    assert stages == {"synthesize_corpus": "data", "train_model": "train", "explain_input": "explain"}
    table = job_table(jobs, stages)
    assert table["seconds"].tolist()[:3] == [65.0, 2400.0, 1800.0]
    assert wall_seconds(table) == 65 + 2400  # first start to last finish; the unfinished job is left out
    per_stage = breakdown(table, "stage").set_index("stage")
    assert per_stage.loc["train", "jobs"] == 2
    assert per_stage.loc["train", "job_seconds"] == 4200
    assert per_stage.loc["train", "longest_job_s"] == 2400
    assert per_stage.loc["train", "first_start_min"] == pytest.approx(65 / 60)
    assert per_stage.loc["train", "last_end_min"] == pytest.approx(2465 / 60)
    assert per_stage.loc["explain", "unfinished"] == 1
    text = breakdown_markdown(table, cores=2)
    assert text.startswith("wall time (first job start to last job finish): 41 min 05 s (2465 s)")
    # 4265 job-seconds over 2 cores x 2465 s
    assert "= 87% of the cores' wall time" in text
    assert "| train | 2 | 1 h 10 min 00 s | 98.5% | 40 min 00 s | 1.1-41.1 |" in text
    assert "| explain_input | 1 (1 unfinished) | 0 s | 0.0% | - | 41.1- |" in text


def test_bad_logs_name_the_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text("[Thu Dec  3 08:38:49 2026]\nFinished jobid: 4 (Rule: decode)\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.log:2: job 4 \(decode\) finishes but never started"):
        parse_snakemake_log(log)
    log.write_text("[Thu Dec  3 08:38:49 2026]\nrule decode:\n    input: a\nSelect jobs\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.log:2: job of rule 'decode' has no 'jobid:' line"):
        parse_snakemake_log(log)
    log.write_text("Building DAG of jobs...\nNothing to be done.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no job in this Snakemake log"):
        parse_snakemake_log(log)
    with pytest.raises(ValueError, match="no 'rule <name>:'"):
        rule_stages(tmp_path)


def test_a_log_with_no_finished_job(tmp_path: Path, rules_dir: Path) -> None:
    """A run killed during its first job: the started job is listed, with no wall time and no shares."""
    log = tmp_path / "killed.log"
    log.write_text("[Thu Dec  3 08:38:49 2026]\nrule train_model:\n    jobid: 7\n", encoding="utf-8")
    text = breakdown_markdown(job_table(parse_snakemake_log(log), rule_stages(rules_dir)), cores=2)
    assert text.startswith("wall time: - (no job of this log finished)\n")
    assert "job time:" not in text
    assert "| train_model | 1 (1 unfinished) | 0 s | - | - | 0.0- |" in text


def test_format_minutes() -> None:
    assert format_minutes(45.4) == "45 s"
    assert format_minutes(725) == "12 min 05 s"
    assert format_minutes(3725) == "1 h 02 min 05 s"
    assert format_minutes(float("nan")) == "-"
