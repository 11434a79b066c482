"""caspes.report (paper tables and claims): table builders from per-run files, and the claims check."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from caspes.report.claims import claims_check, claims_markdown
from caspes.report.paper_tables import build_table
from caspes.report.results import run_of
from caspes.report.tables import to_csv, to_markdown, write_table


def _corr(path: Path, values: dict[tuple[str, str], list[float]], pooling: str = "max2d") -> str:
    """A correlation file: values[(layer, head)] = r per utterance."""
    rows = [
        {"utterance": f"u{k}", "pooling": pooling, "layer": layer, "head": head, "r": r}
        for (layer, head), rs in values.items()
        for k, r in enumerate(rs)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False, na_rep="nan")
    return str(path)


def _curve(path: Path, auc: float, metric: str = "wer_max") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"unit": "cell", "metric": metric, "percent": [0, 100], "score": [0, 100], "auc": auc}
    ).to_csv(path, sep="\t", index=False)
    return str(path)


def test_run_of() -> None:
    run = run_of("results/small/en-it/test/correlation/smh-p0.7.tsv")
    assert (run.model, run.src, run.tgt, run.split, run.name, run.task) == (
        "small",
        "en",
        "it",
        "test",
        "smh-p0.7",
        "ST",
    )
    assert run_of("results/base/en-en/dev/quality.tsv").direction == "en-en"
    with pytest.raises(ValueError):
        run_of("results/paper/table1.csv")


def test_table1_grid_means_and_marks(tmp_path: Path) -> None:
    values = {
        ("1", "1"): [0.1, 0.3], ("1", "2"): [0.0, 0.2], ("2", "1"): [0.5, 0.7], ("2", "2"): [0.4, float("nan")],
        ("1", "avg"): [0.2, 0.2], ("2", "avg"): [0.6, 0.8], ("avg", "1"): [0.5, 0.5], ("avg", "2"): [0.3, 0.3],
        ("avg", "avg"): [0.65, 0.65],
    }  # fmt: skip
    path = _corr(tmp_path / "results/base/en-en/test/correlation/smx.tsv", values)
    table = build_table("table1", {"correlation": [path]})
    assert table.columns == ["run", "layer", "h1", "h2", "h-AVG"]
    grid = {(r[1].value, c): r[k].value for r in table.rows for k, c in ((2, "h1"), (3, "h2"), (4, "avg"))}
    assert grid[("l1", "h1")] == pytest.approx(0.2) and grid[("l2", "h2")] == pytest.approx(
        0.4
    )  # NaN left out
    assert grid[("l2", "avg")] == pytest.approx(0.7) and grid[("l-AVG", "avg")] == pytest.approx(0.65)
    md = to_markdown(table)
    assert "**0.600**" in md  # best single head: layer 2, head 1
    assert "<u>0.700</u>" in md  # best layer (h-AVG)
    assert "<u>0.500</u>" in md  # best head over layers (l-AVG row)
    assert any("1 utterance-level correlations were undefined" in n for n in table.notes)


def test_table4_and_6_and_discussion(tmp_path: Path) -> None:
    run = tmp_path / "results/base/en-en/dev"
    corr = []
    rows = []
    for pooling, r in (("avg2d", 0.3), ("max1d_avg1d", 0.4), ("max2d", 0.5)):
        rows.append(pd.read_csv(_corr(tmp_path / f"x{pooling}.tsv", {("1", "avg"): [r], ("avg", "avg"): [r + 0.01]},
                                      pooling), sep="\t"))  # fmt: skip
    (run / "correlation").mkdir(parents=True)
    pd.concat(rows).to_csv(run / "correlation/smx.tsv", sep="\t", index=False)
    corr.append(str(run / "correlation/smx.tsv"))
    dels = [
        _curve(run / f"deletion/smx-{p}.tsv", auc)
        for p, auc in (("avg2d", 40), ("max1d_avg1d", 45), ("max2d", 50))
    ]
    t4 = build_table("table4", {"correlation": corr, "deletion": dels})
    assert [r[0].value for r in t4.rows] == ["2D avg", "1D max + 1D avg", "2D max"]
    assert t4.rows[2][2].value == pytest.approx(0.51) and t4.rows[2][2].bold and t4.rows[2][3].bold
    assert not t4.rows[0][3].bold
    h = []
    d = []
    for p, r, auc in ((0.5, 0.2, 30), (0.7, 0.4, 60), (0.9, 0.3, 50)):
        h.append(_corr(run / f"correlation/smh-p{p:g}.tsv", {("1", "avg"): [r], ("avg", "avg"): [r]}, "none"))
        d.append(_curve(run / f"deletion/smh-p{p:g}.tsv", auc))
    t6 = build_table("table6", {"correlation": h, "deletion": d})
    assert [r[0].value for r in t6.rows] == ["0.9", "0.7", "0.5"]
    assert t6.rows[1][3].bold and t6.rows[1][3].value == 60
    test = tmp_path / "results/base/en-en/test/deletion"
    disc = build_table("discussion", {"deletion": [_curve(test / f"{m}.tsv", a) for m, a in
                                                    (("ca", 40.0), ("smx-max2d", 50.0), ("smx", 90.0))]})  # fmt: skip
    assert [r[2].value for r in disc.rows] == [40.0, 50.0, 90.0]

    paths = {}
    for t in (t4, t6, disc):
        write_table(t, tmp_path / "paper" / t.name)
        paths[t.name] = tmp_path / "paper" / f"{t.name}.csv"
    claims = claims_check(paths, p_h=0.7)
    by_text = {c.claim.split(" (")[0][:30]: c for c in claims}
    assert all(c.holds for c in claims), [(c.claim, c.ours) for c in claims]
    assert len(claims) == 3 and by_text
    text = claims_markdown(claims)
    assert text.startswith("# Claims check") and "3 of 3 claims" in text


def test_claims_fail_when_the_data_disagree(tmp_path: Path) -> None:
    t6 = pd.DataFrame({"p_H": ["0.9", "0.7"], "l1": [0.5, 0.4], "l-AVG": [0.5, 0.4], "deletion": [70.0, 60.0],
                       "paper l-AVG": [0.741, 0.746], "paper deletion": [58.2, 61.45]})  # fmt: skip
    t6.to_csv(tmp_path / "table6.csv", index=False)
    disc = pd.DataFrame({"run": ["base en-en"] * 3, "map": ["CA (all layers and heads)", "SM^X, 2D max to T'",
                         "SM^X, full resolution"], "deletion": [60.0, 50.0, 90.0], "paper": [41.2, 52.9, 91.3]})  # fmt: skip
    disc.to_csv(tmp_path / "discussion.csv", index=False)
    claims = claims_check({"table6": tmp_path / "table6.csv", "discussion": tmp_path / "discussion.csv"}, 0.7)
    assert [c.holds for c in claims] == [False, False]
    assert "0.9" in claims[0].ours


def test_table5_reads_quality_and_scores(tmp_path: Path) -> None:
    run = tmp_path / "results/small/en-it/test"
    run.mkdir(parents=True)
    pd.DataFrame([{"task": "st", "lang_pair": "en-it", "bleu": 31.5, "chrf": 55.0}]).to_csv(
        run / "quality.tsv", sep="\t"
    )
    dele = [
        _curve(run / "deletion/smx.tsv", 12.5, "bleu"),
        _curve(run / "deletion/smh-p0.7.tsv", 20.0, "bleu"),
    ]
    sizes = []
    for m, a in (("smx", 30.0), ("smh-p0.7", 40.0)):
        (run / "size").mkdir(exist_ok=True)
        pd.DataFrame({"threshold": [0, 1], "percent_above": [100, 0], "auc": a}).to_csv(
            run / f"size/{m}.tsv", sep="\t"
        )
        sizes.append(str(run / f"size/{m}.tsv"))
    table = build_table("table5", {"quality": [str(run / "quality.tsv")], "deletion": dele, "sizes": sizes})
    csv = to_csv(table).splitlines()
    assert csv[0].split(",")[:7] == ["model", "direction", "task", "WER", "BLEU", "chrF", "COMET"]
    row = csv[1].split(",")
    assert row[:3] == ["small", "en-it", "ST"] and float(row[4]) == 31.5 and row[3] == "" and row[6] == ""
    assert [float(x) for x in row[7:]] == [12.5, 30.0, 20.0, 40.0]
    assert math.isclose(table.rows[0][5].value, 55.0)


def test_timestamp_claim(tmp_path: Path) -> None:
    rows = [
        ("base", "en", "CA l1", "dtw", 150.0), ("base", "en", "CA l2", "dtw", 120.0),
        ("base", "en", "CA all", "dtw", 110.0), ("base", "en", "SM^H", "argmax", 40.0),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["model", "lang", "map", "method", "start error (ms)"])
    df.to_csv(tmp_path / "timestamps.csv", index=False)
    (claim,) = claims_check({"timestamps": tmp_path / "timestamps.csv"})
    assert (
        claim.holds and "best layer (CA l2) 120 ms" in claim.ours and "SM^H with argmax (40 ms" in claim.ours
    )
    df.loc[2, "start error (ms)"] = 130.0
    df.to_csv(tmp_path / "timestamps.csv", index=False)
    assert claims_check({"timestamps": tmp_path / "timestamps.csv"})[0].holds is False
