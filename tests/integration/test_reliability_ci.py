"""Map reliability, the noise-corrected correlations and the convergence output on the CI study."""

import math

import numpy as np
import pandas as pd
import pytest

from caspes.analysis.correlation import spearman_brown, split_half
from caspes.explain.stores import SaliencyStore

pytestmark = pytest.mark.integration


def test_correlation_files_carry_reliability_and_rank_correlations(data_run):
    run = data_run / "results/base/en-en/test"
    corr = pd.read_csv(run / "correlation/smx.tsv", sep="\t", dtype={"layer": str, "head": str})
    assert {"spearman", "kendall", "split_half", "reliability"} <= set(corr.columns)
    assert corr["spearman"].between(-1, 1).all() and corr["kendall"].between(-1, 1).all()
    # recomputed from the store's half maps: the same split-half r for every selection of an utterance
    first = corr[corr["pooling"] == "max2d"].groupby("utterance")
    with SaliencyStore(run / "saliency/smx.zip", halves=True) as store:
        for uid, g in first:
            rec = store[uid]
            assert rec.halves is not None and rec.halves.shape == (2, *rec.saliency.shape)
            want = split_half(rec.halves, rec.roles, "max2d", 4, "token")
            assert g["split_half"].to_numpy() == pytest.approx(np.full(len(g), want))
            assert g["reliability"].iloc[0] == pytest.approx(spearman_brown(want))


def test_tables_report_the_corrected_r_beside_the_raw_one(data_run):
    paper = data_run / "results/paper"
    t3 = pd.read_csv(paper / "table3.csv")
    assert {"l-AVG", "l-AVG_corrected", "l-AVG_reliability", "l-AVG_spearman", "l-AVG_kendall"} <= set(
        t3.columns
    )
    for _, row in t3.iterrows():
        corr = pd.read_csv(
            data_run / f"results/{row['model']}/{row['source']}-{_tgt(row)}/test/correlation/smh-p0.7.tsv",
            sep="\t",
            dtype={"layer": str, "head": str},
        )
        lavg = corr[(corr["layer"] == "avg") & (corr["head"] == "avg")]
        ok = lavg["r"].notna() & lavg["reliability"].notna()
        rel = lavg["reliability"][ok].mean()
        assert row["l-AVG"] == pytest.approx(lavg["r"].mean())
        if rel > 0:
            assert row["l-AVG_corrected"] == pytest.approx(lavg["r"][ok].mean() / math.sqrt(rel))
        assert row["l-AVG_reliability"] == pytest.approx(lavg["reliability"].mean())
    assert "Noise-corrected l-AVG" in (paper / "table3.md").read_text(encoding="utf-8")
    t5 = pd.read_csv(paper / "table5.csv")
    assert "SM^X ρ" in t5.columns and "SM^H (p0.7) ρ" in t5.columns
    expl = pd.read_csv(data_run / "results/explanations.tsv", sep="\t")
    assert expl["reliability"].notna().all() and (expl["reliability_utterances"] > 0).all()


def _tgt(row) -> str:
    task = str(row["task"])
    return task[task.index("-") + 1 : task.index(")")]


def test_convergence_output(data_run):
    paper = data_run / "results/paper"
    for ext in ("csv", "md", "tex", "png", "pdf"):
        assert (paper / f"convergence.{ext}").stat().st_size > 0
    sweep = pd.read_csv(data_run / "results/base/en-en/dev/convergence.tsv", sep="\t")
    # configs/ci.yaml: 2 utterances, budgets 6..48 for both maps (SM^X rounds to multiples of 3 levels)
    assert sweep["utterance"].nunique() == 2
    assert sorted(sweep[sweep["map"] == "smh"]["masks"].unique()) == [6, 12, 24, 48]
    assert sorted(sweep[sweep["map"] == "smx"]["masks"].unique()) == [6, 12, 24, 48]
    table = pd.read_csv(paper / "convergence.csv")
    means = sweep.groupby(["map", "masks"])["reliability"].mean()
    for _, row in table.iterrows():
        name = "smx" if row["map"] == "SM^X" else "smh"
        assert row["ρ"] == pytest.approx(means[(name, row["masks"])], nan_ok=True)
    md = (paper / "convergence.md").read_text(encoding="utf-8")
    assert "SM^X" in md and "ρ = 0.9" in md
