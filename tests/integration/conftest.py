"""The finished configs/ci.yaml study, built once per test session and shared by every
integration module (set CASPES_CI_STUDY to the folder of a study run before to reuse it)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def data_run(tmp_path_factory):
    given = os.environ.get("CASPES_CI_STUDY")
    if given:
        return Path(given)
    if shutil.which("snakemake") is None:
        pytest.skip("snakemake is not installed")
    workdir = tmp_path_factory.mktemp("ci_study")
    cmd = ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "--configfile", str(ROOT / "configs" / "ci.yaml")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir
