"""The claims check cannot be fooled: on the configs/ci.yaml study (models trained for 10 steps,
30 masks per map, 3 explained utterances per run) no claim of the paper holds."""

from pathlib import Path

import pandas as pd
import pytest

from caspes.report.claims import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, ClaimOptions, claims_check
from caspes.report.claims_data import load_study

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def ci_study(data_run):
    """The finished CI study (tests/integration/conftest.py)."""
    return data_run


def _inputs(study: Path) -> dict[str, list[str]]:
    """The claims check's inputs, found in the study folder as the rule lists them."""
    res = study / "results"
    dele = sorted(res.glob("*/*/*/deletion/*.hyps.tsv"))
    return {
        "correlations": [str(p) for p in sorted(res.glob("*/*/*/correlation/*.tsv"))],
        "deletion_curves": [str(p).replace(".hyps.tsv", ".tsv") for p in dele],
        "deletion_hyps": [str(p) for p in dele],
        "references": sorted({str(p.parents[1] / "hyps.tsv") for p in dele}),
        "timestamps": [str(p) for p in sorted(res.glob("*/*/test/timestamps.tsv"))],
    }


def test_no_claim_holds_on_the_ci_study(ci_study):
    paper = ci_study / "results" / "paper"
    text = (paper / "claims.md").read_text(encoding="utf-8")
    rows = pd.read_csv(paper / "claims.csv")
    claims = rows[rows["setting"] == "claim"]
    assert len(claims) >= 8, claims  # every claim the CI study can check is there
    assert HOLDS not in set(claims["verdict"]), claims[["claim", "verdict", "reason"]]
    assert set(claims["verdict"]) <= {DOES_NOT_HOLD, INCONCLUSIVE}
    assert f"**{HOLDS}**" not in text and "0 hold" in text
    lines = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(lines) == len(claims)
    # 3 utterances per run: every test is inconclusive for want of utterances (or does not hold).
    tests = rows[rows["setting"] != "claim"]
    assert (tests["n"] <= 3).all()
    assert tests[tests["verdict"] == INCONCLUSIVE]["reason"].str.startswith("too few utterances").all()


def test_no_claim_holds_without_the_gates(ci_study):
    """The same files with the utterance and reliability gates off: the untrained models'
    correlations (r ≈ 0) still pass no claim's bounds or tests."""
    opts = ClaimOptions(resamples=200, seed=1, min_utterances=2, reliability_smx=0.0, reliability_smh=0.0)
    claims = claims_check(load_study(**_inputs(ci_study)), opts)
    assert len(claims) >= 8
    assert [c.number for c in claims if c.verdict == HOLDS] == [], [(c.number, c.reason) for c in claims]
