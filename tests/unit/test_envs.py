"""The conda environment of the rules pins what pyproject.toml pins (same versions)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", req.strip())
        assert m, f"not an exact pin: {req!r}"
        pins[m.group(1).lower()] = m.group(2)
    return pins


def test_conda_env_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _pins(project["dependencies"])  # the workflow extra (snakemake) is not needed inside jobs
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs, "no conda environment under envs/"
    for env_path in envs:
        env = yaml.safe_load(env_path.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        have = _pins(pip)
        assert have == wanted, (
            f"{env_path.name}: differs from pyproject: {set(have.items()) ^ set(wanted.items())}"
        )
        python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
        assert python and tuple(int(x) for x in python[0].split("=")[1].split(".")[:2]) >= (3, 11)


def test_every_rule_uses_an_existing_env() -> None:
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / rel).resolve().is_file(), f"{smk.name}: {rel}"


def test_export_source_path_prepends_once(monkeypatch) -> None:
    import os

    from caspes.core.runlog import export_source_path

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/a", "/src"]))
    export_source_path("/src")
    export_source_path("/src")
    assert os.environ["PYTHONPATH"] == os.pathsep.join(["/src", "/a"])
