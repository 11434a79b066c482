"""caspes.report (paper tables and claims): table builders from per-run files, the claims check, and
the rules' entry points (paper tables, claims, the quality and explanation summaries)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from caspes.report.paper_tables import build_table, write_paper_table
from caspes.report.results import map_sort_key, run_of
from caspes.report.summaries import explanation_row, explanation_table, quality_table
from caspes.report.tables import to_csv, to_latex, to_markdown


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


def test_map_sort_key_orders_layers_then_named_maps() -> None:
    names = ["SM^H", "other", "CA l10", "CA all", "CA l2", "SM^X", "CA l1"]
    assert sorted(names, key=map_sort_key) == ["CA l1", "CA l2", "CA l10", "CA all", "SM^X", "SM^H", "other"]


def _claims_inputs(tmp_path: Path) -> tuple[list[str], list[str]]:
    run = tmp_path / "results/base/en-en/test/correlation"
    smx = {("1", "avg"): [0.1, 0.2, 0.3], ("2", "avg"): [0.4, 0.5, 0.7], ("avg", "avg"): [0.5, 0.5, 0.6]}
    smh = {("1", "avg"): [0.2, 0.3, 0.3], ("2", "avg"): [0.6, 0.7, 0.8], ("avg", "avg"): [0.7, 0.8, 0.8]}
    correlations = [_corr(run / "smx.tsv", smx), _corr(run / "smh-p0.7.tsv", smh, "none")]
    pd.DataFrame({"model": ["base"], "source": ["en"], "task": ["ASR (en-en)"], "l1": [0.27], "l2": [0.7],
                  "l-AVG": [0.77]}).to_csv(tmp_path / "table3.csv", index=False)  # fmt: skip
    return [str(tmp_path / "table3.csv")], correlations


def test_write_paper_table_writes_csv_markdown_and_latex(tmp_path: Path) -> None:
    test = tmp_path / "results/base/en-en/test/deletion"
    files = [_curve(test / f"{m}.tsv", a) for m, a in (("ca", 40.0), ("smx-max2d", 50.0), ("smx", 90.0))]
    table = write_paper_table("discussion", {"deletion": tuple(files)}, tmp_path / "paper/discussion.csv")
    assert table.name == "discussion" and len(table.rows) == 3
    expected = build_table("discussion", {"deletion": files})
    assert (tmp_path / "paper/discussion.csv").read_text() == to_csv(expected)
    assert (tmp_path / "paper/discussion.md").read_text() == to_markdown(expected)
    assert (tmp_path / "paper/discussion.tex").read_text() == to_latex(expected)


def test_quality_table_stacks_runs(tmp_path: Path) -> None:
    files = []
    for pair, wer in (("en-en", 12.5), ("it-it", 20.0)):
        run = tmp_path / f"results/base/{pair}/test"
        run.mkdir(parents=True)
        pd.DataFrame([{"model": "base", "lang_pair": pair, "wer": wer}]).to_csv(run / "quality.tsv", sep="\t",
                                                                                  index=False)  # fmt: skip
        files.append(str(run / "quality.tsv"))
    table = quality_table(files, tmp_path / "quality.tsv")
    assert (
        tmp_path / "quality.tsv"
    ).read_text() == "model\tlang_pair\twer\nbase\ten-en\t12.5\nbase\tit-it\t20.0\n"
    assert table["wer"].tolist() == [12.5, 20.0]


def test_explanation_table_one_row_per_deletion_curve(tmp_path: Path) -> None:
    run = tmp_path / "results/base/en-it/test"
    files = []
    for name, auc, size in (("smx", 12.5, 30.0), ("smh-p0.7", 20.0, 40.0)):
        files.append(_curve(run / f"deletion/{name}.tsv", auc, "bleu"))
        (run / "size").mkdir(exist_ok=True)
        pd.DataFrame({"threshold": [0, 1], "auc": size}).to_csv(
            run / f"size/{name}.tsv", sep="\t", index=False
        )
        (run / "saliency").mkdir(exist_ok=True)
        pd.DataFrame({"utterances": [2, 1], "seconds": [1.0, 1.0], "device": ["cpu", "cuda"]}).to_csv(
            run / f"saliency/{name}.timing.tsv", sep="\t", index=False
        )
        files += [str(run / f"size/{name}.tsv"), str(run / f"saliency/{name}.zip")]
        # two utterances, two selections each: one reliability per utterance (and pooling)
        pooling = ["max2d", "max2d", "avg2d", "avg2d"] * 2 if name == "smx" else ["none", "none"] * 2
        utts = ["u1"] * (len(pooling) // 2) + ["u2"] * (len(pooling) // 2)
        half = {"max2d": (0.5, 0.7), "avg2d": (0.1, 0.1), "none": (0.8, 0.9)}
        split_half = [half[p][u == "u2"] for p, u in zip(pooling, utts)]
        (run / "correlation").mkdir(exist_ok=True)
        pd.DataFrame({
            "utterance": utts, "pooling": pooling, "layer": "avg", "head": "avg", "r": 0.3,
            "split_half": split_half, "reliability": [2 * h / (1 + h) for h in split_half],
        }).to_csv(run / f"correlation/{name}.tsv", sep="\t", index=False)  # fmt: skip
        files.append(str(run / f"correlation/{name}.tsv"))
    row = explanation_row(files[0])
    sb = (2 * 0.5 / 1.5 + 2 * 0.7 / 1.7) / 2
    assert row.pop("reliability") == pytest.approx(sb) and row.pop("split_half") == pytest.approx(0.6)
    assert row == {
        "model": "base", "direction": "en-it", "split": "test", "map": "smx", "unit": "cell", "metric": "bleu",
        "deletion_auc": 12.5, "size_auc": 30.0, "reliability_utterances": 2, "utterances": 3,
        "seconds_per_utterance": 0.667, "device": "cpu,cuda",
    }  # fmt: skip
    assert explanation_row(files[0], pooling="avg2d")["reliability"] == pytest.approx(2 * 0.1 / 1.1)
    table = explanation_table(files, tmp_path / "explanations.tsv")
    assert table["map"].tolist() == ["smx", "smh-p0.7"] and table["size_auc"].tolist() == [30.0, 40.0]
    lines = (tmp_path / "explanations.tsv").read_text().splitlines()
    assert table["reliability"].tolist() == pytest.approx([sb, (2 * 0.8 / 1.8 + 2 * 0.9 / 1.9) / 2])
    assert lines[0].split("\t") == list(explanation_row(files[0])) and lines[2].split("\t")[:4] == [
        "base",
        "en-it",
        "test",
        "smh-p0.7",
    ]
