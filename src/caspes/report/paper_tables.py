"""The paper's tables, built from the workflow's per-run files: Tables 1-6, the Discussion's deletion
comparison and the word-timestamps table (beyond the paper), each a :class:`~caspes.report.tables.Table`
(:func:`build_table` picks one by name; :func:`write_paper_table` is the rule ``paper_table``).

Every input path has the layout ``results/<model>/<src>-<tgt>/<split>/<kind>/<name>.tsv``
(:func:`~caspes.report.results.run_of`), so a builder needs nothing but the list of files the
workflow hands it.

Correlation files (rule ``correlate``) hold one row per utterance, pooling and (layer, head)
selection; the tables report the mean r over utterances with a defined r, and the number of
undefined ones goes into the table notes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from caspes.report.results import (
    Bootstrap,
    corr_cell,
    map_sort_key,
    r_cell,
    read_correlations,
    read_tsv,
    run_of,
)
from caspes.report.summaries import map_reliability
from caspes.report.tables import Cell, Table, mark_best, to_markdown, write_table

__all__ = [
    "PAPER",
    "table1",
    "table4",
    "table5",
    "table6",
    "discussion",
    "timestamps_table",
    "build_table",
    "write_paper_table",
]

log = logging.getLogger(__name__)

#: Values reported by the paper (EuroParl-ST; base = monolingual en ASR), for side-by-side columns.
PAPER = {
    "table1_layers": [0.111, 0.178, 0.443, 0.546, 0.578, 0.588],
    "table1_heads": [0.546, 0.456, 0.455, 0.574, 0.529, 0.541, 0.525, 0.500],
    "table1_all": 0.577,
    "table3_base_layers": [0.105, 0.179, 0.602, 0.708, 0.745, 0.693],
    "table3_base_all": 0.752,
    "table4": {"avg2d": (0.459, 53.03), "max1d_avg1d": (0.565, 55.18), "max2d": (0.572, 57.04)},
    "table6": {
        0.9: (0.741, 58.20),
        0.7: (0.746, 61.45),
        0.5: (0.700, 57.30),
        0.3: (0.614, 50.45),
        0.1: (0.543, 44.34),
    },
    "discussion": {"ca": 41.2, "smx-max2d": 52.9, "smx": 91.3},
    "table5_base": {"wer": 9.5, "deletion": 91.3, "size": 29.7},
}


POOLING_NAMES = {"avg2d": "2D avg", "max1d_avg1d": "1D max + 1D avg", "max2d": "2D max"}


LANG_NAMES = {"en": "en", "it": "it"}


def _layer_values(corr: pd.DataFrame, pooling: str) -> tuple[dict[int, pd.DataFrame], pd.DataFrame, int]:
    """Per-utterance rows of each layer's head average, of the all-average, and the undefined count."""
    sel = corr[corr["pooling"] == pooling]
    layers = sel[(sel["head"] == "avg") & (sel["layer"] != "avg")]
    per_layer = {int(k): g for k, g in layers.groupby("layer")}
    overall = sel[(sel["layer"] == "avg") & (sel["head"] == "avg")]
    return per_layer, overall, int(sel["r"].isna().sum())


def _corrected_note(entries: Sequence[tuple[str, Cell]]) -> list[str]:
    """The footnote of the noise-corrected l-AVG of each (label, l-AVG cell) (README: "Reliability")."""
    parts = []
    for label, cell in entries:
        corrected, rel = cell.extra.get("corrected", math.nan), cell.extra.get("reliability", math.nan)
        if math.isfinite(rel):
            parts.append(f"{label} {corrected:.3f} (ρ {rel:.2f})")
        else:
            parts.append(f"{label} – (reliability unknown)")
    if not parts:
        return []
    return [
        "Noise-corrected l-AVG, r / √ρ with ρ the mean split-half (Spearman-Brown) reliability of the saliency "
        "maps: " + "; ".join(parts) + ". The CSV has it for every cell (_corrected), with ρ (_reliability) "
        "and the mean Spearman and Kendall correlations (_spearman, _kendall)."
    ]


def _undefined_note(count: int) -> list[str]:
    return (
        [f"{count} utterance-level correlations were undefined (a constant map) and are not averaged in."]
        if count
        else []
    )


# --------------------------------------------------------------------------- tables
def table1(corr_files: Sequence[str], pooling: str, boot: Bootstrap = Bootstrap()) -> Table:
    """Layer x head grid (h-AVG column, l-AVG row) of CA vs pooled SM^X for the ablation model."""
    rows: list[list] = []
    midrules: list[int] = []
    undefined = 0
    n_heads = 0
    blocks = []
    for path in corr_files:
        run = run_of(path)
        sel = read_correlations(path)
        sel = sel[sel["pooling"] == pooling]
        undefined += int(sel["r"].isna().sum())
        values = {key: g for key, g in sel.groupby(["layer", "head"])}
        layers = sorted(int(v) for v in sel["layer"].unique() if v != "avg")
        heads = sorted(int(v) for v in sel["head"].unique() if v != "avg")
        n_heads = max(n_heads, len(heads))
        blocks.append((run, values, layers, heads))
    table = Table(
        name="table1",
        caption=(
            "Pearson r between layer-wise / head-wise cross-attention and SM^X "
            f"({POOLING_NAMES[pooling]} pooling) for the monolingual ASR model, mean over utterances"
            + (f" ± half the {boot.level:.0%} bootstrap interval" if boot.resamples else "")
            + ". h-AVG: heads averaged per layer; l-AVG: layers averaged per head. Bold: highest single head; "
            "underline: highest layer (h-AVG) and highest head (l-AVG). Paper (base, EuroParl-ST): "
            f"h-AVG {', '.join(f'{v:.3f}' for v in PAPER['table1_layers'])}; all {PAPER['table1_all']:.3f}."
        ),
        columns=["run", "layer", *[f"h{h}" for h in range(1, n_heads + 1)], "h-AVG"],
        rows=rows,
        midrules=midrules,
    )
    for run, values, layers, heads in blocks:
        if rows:
            midrules.append(len(rows))
        start = len(rows)
        label = f"{run.model} {run.direction}"
        pad = [None] * (n_heads - len(heads))
        for layer in layers:
            rows.append(
                [label, f"l{layer}"]
                + [corr_cell(values.get((str(layer), str(h))), boot) for h in heads]
                + pad
                + [corr_cell(values.get((str(layer), "avg")), boot)]
            )
        rows.append(
            [label, "l-AVG"]
            + [corr_cell(values.get(("avg", str(h))), boot) for h in heads]
            + pad
            + [corr_cell(values.get(("avg", "avg")), boot)]
        )
        table.rows = rows
        grid = [(r, c) for r in range(start, start + len(layers)) for c in range(2, 2 + len(heads))]
        mark_best(table, grid, style="bold")
        mark_best(table, [(r, 2 + n_heads) for r in range(start, start + len(layers))], style="underline")
        mark_best(table, [(start + len(layers), c) for c in range(2, 2 + len(heads))], style="underline")
    overall = [(row[0], row[-1]) for row in table._normalise() if row[1].value == "l-AVG"]  # type: ignore[union-attr]
    table.notes = _undefined_note(undefined) + _corrected_note(
        [(str(label.value), c) for label, c in overall]
    )  # type: ignore[union-attr]
    return table


def _layerwise(
    name: str, corr_files: Sequence[str], pooling: str, caption: str, boot: Bootstrap = Bootstrap()
) -> Table:
    """One row per model and direction: h-AVG r per layer and the all-average (l-AVG)."""
    entries = []
    undefined = 0
    for path in corr_files:
        run = run_of(path)
        per_layer, overall, undef = _layer_values(read_correlations(path), pooling)
        undefined += undef
        entries.append((run, per_layer, overall))
    n_layers = max((max(p) for _, p, _ in entries if p), default=0)
    table = Table(
        name=name,
        caption=caption,
        columns=["model", "source", "task", *[f"l{k}" for k in range(1, n_layers + 1)], "l-AVG"],
        rows=[],
    )
    for run, per_layer, overall in entries:
        table.rows.append(
            [run.model, run.src, f"{run.task} ({run.direction})"]
            + [corr_cell(per_layer.get(k), boot) for k in range(1, n_layers + 1)]
            + [corr_cell(overall, boot)]
        )
        r = len(table.rows) - 1
        mark_best(table, [(r, c) for c in range(3, 4 + n_layers)], style="bold")
        mark_best(table, [(r, c) for c in range(3, 3 + len(per_layer))], style="underline")
    labels = [f"{run.model} {run.src} {run.task}" for run, _, _ in entries]
    table.notes = _undefined_note(undefined) + _corrected_note(
        [(label, table.cell(r, 3 + n_layers)) for r, label in enumerate(labels)]
    )
    return table


def _deletion_auc(path: str | Path) -> tuple[float, str]:
    curve = read_tsv(path)
    return float(curve["auc"].iloc[0]), str(curve["metric"].iloc[0])


def _size_auc(path: str | Path) -> float:
    return float(read_tsv(path)["auc"].iloc[0])


def _map_key(path: str | Path) -> tuple[str, str, str]:
    """(model, direction, map) of a per-map file."""
    run = run_of(path)
    return run.model, run.direction, run.name


def _ablation_table(
    name: str,
    caption: str,
    first_column: str,
    body: Sequence[
        tuple[str, dict[int, pd.DataFrame], pd.DataFrame, float | None, float | None, float | None]
    ],
    n_layers: int,
    metric: str,
    undefined: int,
    boot: Bootstrap,
) -> Table:
    """Tables 4 and 6: a row per setting of ``body`` (label, per-layer r, all-average r, deletion AUC,
    the paper's l-AVG and deletion), bold on the best of each column (the deletion's direction given by
    ``metric``: wer_max higher, BLEU lower) and underline on the best layer of each row."""
    table = Table(
        name=name,
        caption=caption,
        columns=[first_column, *[f"l{k}" for k in range(1, n_layers + 1)], "l-AVG", "deletion", "paper l-AVG",
                 "paper deletion"],
        rows=[],
    )  # fmt: skip
    for label, per_layer, overall, deletion, paper_r, paper_del in body:
        table.rows.append(
            [label, *[corr_cell(per_layer.get(k), boot) for k in range(1, n_layers + 1)], corr_cell(overall, boot),
             Cell(deletion, digits=2), Cell(paper_r), Cell(paper_del, digits=2)]
        )  # fmt: skip
    n_rows = len(table.rows)
    for c in range(1, n_layers + 3):
        mark_best(
            table,
            [(r, c) for r in range(n_rows)],
            higher_is_better=(c != n_layers + 2 or metric == "wer_max"),
        )
    for r in range(n_rows):
        mark_best(table, [(r, c) for c in range(1, 1 + n_layers)], style="underline")
    table.notes = _undefined_note(undefined) + _corrected_note(
        [(f"{first_column} {row[0].value}", row[1 + n_layers]) for row in table._normalise()]  # type: ignore[union-attr]
    )
    return table


def table4(corr_files: Sequence[str], deletion_files: Sequence[str], boot: Bootstrap = Bootstrap()) -> Table:
    """Aggregation ablation of SM^X (dev): layer-wise and l-AVG r per pooling, frame deletion AUC."""
    corr = pd.concat([read_correlations(p) for p in corr_files])
    deletions = {run_of(p).name.split("-", 1)[1]: _deletion_auc(p) for p in deletion_files}
    n_layers = 0
    body = []
    metrics = []
    undefined = 0
    for pooling in ("avg2d", "max1d_avg1d", "max2d"):
        per_layer, overall, undef = _layer_values(corr, pooling)
        undefined += undef
        n_layers = max(n_layers, len(per_layer))
        auc, metric = deletions.get(pooling, (math.nan, "wer_max"))
        metrics.append(metric)
        body.append((POOLING_NAMES[pooling], per_layer, overall, auc, *PAPER["table4"][pooling]))
    caption = (
        "Aggregation of SM^X to the encoder grid (ablation model, ablation split): Pearson r of the "
        "head-averaged cross-attention per layer and of the all-average (l-AVG), and the deletion AUC "
        f"of the pooled map ({'wer_max' if metrics[0] == 'wer_max' else 'BLEU'}; frames ranked, 5% steps). "
        "Bold: best per column; underline: best layer per row. Paper values: base, EuroParl-ST dev."
    )
    return _ablation_table("table4", caption, "aggregation", body, n_layers, metrics[0], undefined, boot)


def table5(
    quality_files: Sequence[str],
    deletion_files: Sequence[str],
    size_files: Sequence[str],
    corr_files: Sequence[str] = (),
    pooling: str = "max2d",
) -> Table:
    """Quality of the models and of their explanations (main split), with each map's mean
    reliability (:func:`~caspes.report.summaries.map_reliability`) when ``corr_files`` are given."""
    quality: dict[tuple[str, str], tuple[str, pd.Series]] = {}
    for path in quality_files:
        run = run_of(path)
        quality[(run.model, run.direction)] = (run.task, read_tsv(path).iloc[0])
    dele = {_map_key(p): _deletion_auc(p)[0] for p in deletion_files}
    size = {_map_key(p): _size_auc(p) for p in size_files}
    reliability = {_map_key(p): map_reliability(p, pooling)[1] for p in corr_files}
    maps = sorted({k[2] for k in dele}, key=lambda n: (n != "smx", n))
    columns = ["model", "direction", "task", "WER", "BLEU", "chrF", "COMET"]
    for m in maps:
        label = "SM^X" if m == "smx" else f"SM^H ({m.split('-', 1)[1]})"
        columns += [f"{label} deletion", f"{label} size"] + ([f"{label} ρ"] if reliability else [])
    table = Table(
        name="table5",
        caption=(
            "Model quality (WER for ASR; BLEU, chrF and COMET, when a local checkpoint is configured, for ST) "
            "and explanation quality: deletion AUC (wer_max for ASR, higher is better; BLEU for ST, lower is "
            "better) and size AUC (lower is more compact). SM^X deletion ranks single time-frequency cells, "
            f"SM^H deletion encoder steps. Paper (base, en): WER {PAPER['table5_base']['wer']}, deletion "
            f"{PAPER['table5_base']['deletion']}, size {PAPER['table5_base']['size']}."
            + (
                " ρ: mean split-half (Spearman-Brown) reliability of the map, SM^X pooled as in the "
                "correlations (beyond the paper)."
                if reliability
                else ""
            )
        ),
        columns=columns,
        rows=[],
    )
    for model, direction in quality:
        task, q = quality[(model, direction)]
        row: list = [model, direction, task]
        for col in ("wer", "bleu", "chrf", "comet"):
            v = q.get(col) if col in q.index else None
            row.append(Cell(None if v is None or pd.isna(v) else float(v), digits=2))
        for m in maps:
            row += [
                Cell(dele.get((model, direction, m)), digits=2),
                Cell(size.get((model, direction, m)), digits=2),
            ] + ([Cell(reliability.get((model, direction, m)), digits=2)] if reliability else [])
        table.rows.append(row)
    return table


def table6(corr_files: Sequence[str], deletion_files: Sequence[str], boot: Bootstrap = Bootstrap()) -> Table:
    """p_H ablation of SM^H (dev): layer-wise and l-AVG r, encoder-step deletion AUC."""
    by_p: dict[float, dict] = {}
    undefined = 0
    for path in corr_files:
        p = float(run_of(path).name.split("-p", 1)[1])
        per_layer, overall, undef = _layer_values(read_correlations(path), "none")
        undefined += undef
        by_p.setdefault(p, {})["corr"] = (per_layer, overall)
    metric = "wer_max"
    for path in deletion_files:
        p = float(run_of(path).name.split("-p", 1)[1])
        by_p.setdefault(p, {})["del"], metric = _deletion_auc(path)
    ps = sorted(by_p, reverse=True)
    n_layers = max((len(by_p[p]["corr"][0]) for p in ps), default=0)
    body = [
        (f"{p:g}", *by_p[p]["corr"], by_p[p].get("del"), *PAPER["table6"].get(round(p, 3), (None, None)))
        for p in ps
    ]
    caption = (
        "Occlusion probability p_H of SM^H (ablation model, ablation split): Pearson r of the "
        "head-averaged cross-attention per layer and of the all-average (l-AVG), and the deletion AUC "
        "(encoder steps). Bold: best per column; underline: best layer per row. Paper: base, EuroParl-ST dev."
    )
    return _ablation_table("table6", caption, "p_H", body, n_layers, metric, undefined, boot)


def discussion(deletion_files: Sequence[str]) -> Table:
    """Deletion AUC of cross-attention vs frequency-aggregated SM^X vs full-resolution SM^X."""
    labels = {
        "ca": "CA (all layers and heads)",
        "smx-max2d": "SM^X, 2D max to T'",
        "smx": "SM^X, full resolution",
    }
    table = Table(
        name="discussion",
        caption=(
            "The Discussion's deletion comparison (main split): frames ranked by cross-attention and by "
            "frequency-aggregated SM^X, single time-frequency cells by full-resolution SM^X; AUC of wer_max "
            "(ASR, higher = better explanation) or BLEU (ST, lower = better). Paper: base model."
        ),
        columns=["run", "map", "deletion", "paper"],
        rows=[],
    )
    for path in deletion_files:
        run = run_of(path)
        auc, _ = _deletion_auc(path)
        table.rows.append(
            [f"{run.model} {run.direction}", labels[run.name], Cell(auc, digits=2),
             Cell(PAPER["discussion"][run.name], digits=1)]
        )  # fmt: skip
    return table


def build_table(
    name: str, inputs: Mapping[str, Sequence[str]], pooling: str = "max2d", boot: Bootstrap = Bootstrap()
) -> Table:
    """Build one paper table from the workflow's files: ``inputs`` maps ``correlation``,
    ``deletion``, ``quality``, ``sizes`` or ``timestamps`` to per-run files, as the rule
    ``paper_table`` hands them over (the names each table needs: workflow/rules/common.smk)."""
    if name == "table1":
        return table1(inputs["correlation"], pooling, boot)
    if name == "table2":
        return _layerwise(
            "table2", inputs["correlation"], pooling,
            "Pearson r between cross-attention and SM^X "
            f"({POOLING_NAMES[pooling]}) per decoder layer (heads averaged) and averaged over layers and "
            "heads (l-AVG), for the multilingual multitask models per source language and task. Bold: best "
            "per row; underline: best layer.", boot,
        )  # fmt: skip
    if name == "table3":
        return _layerwise(
            "table3", inputs["correlation"], "none",
            "Pearson r between cross-attention and the encoder-output saliency SM^H per decoder layer (heads "
            "averaged) and l-AVG, for every model, source language and task. Bold: best per row; underline: "
            "best layer. Paper (base): "
            f"{', '.join(f'{v:.3f}' for v in PAPER['table3_base_layers'])}; l-AVG {PAPER['table3_base_all']}.", boot,
        )  # fmt: skip
    if name == "table4":
        return table4(inputs["correlation"], inputs["deletion"], boot)
    if name == "table5":
        return table5(
            inputs["quality"], inputs["deletion"], inputs["sizes"], inputs.get("correlation", ()), pooling
        )
    if name == "table6":
        return table6(inputs["correlation"], inputs["deletion"], boot)
    if name == "discussion":
        return discussion(inputs["deletion"])
    if name == "timestamps":
        return timestamps_table(inputs["timestamps"], boot)
    raise ValueError(f"unknown table {name!r}")


def write_paper_table(
    name: str,
    inputs: Mapping[str, Sequence[str]],
    out_csv: str | Path,
    pooling: str = "max2d",
    bootstrap: Mapping[str, object] | None = None,
) -> Table:
    """Rule ``paper_table``: :func:`build_table` (``bootstrap``: the :class:`Bootstrap` settings,
    none for no intervals) written as ``out_csv`` with its ``.md`` and ``.tex`` beside it
    (:func:`write_table`); logs the Markdown and returns the table."""
    boot = Bootstrap(**(bootstrap or {}))  # type: ignore[arg-type]
    table = build_table(name, {key: list(files) for key, files in inputs.items()}, pooling=pooling, boot=boot)
    write_table(table, Path(out_csv).with_suffix(""))
    log.info("\n%s", to_markdown(table))
    return table


def timestamps_table(files: Sequence[str | Path], boot: Bootstrap = Bootstrap()) -> Table:
    """Word timestamp accuracy per model, language, map and method (ASR runs of the main split)."""
    table = Table(
        name="timestamps",
        caption=(
            "Word timestamps estimated from each map (cross-attention of each decoder layer with heads "
            "averaged, of all layers and heads, SM^X pooled to T', SM^H) by DTW, per-token argmax or centre "
            "of mass, against the corpus' ground-truth word times, on the hypothesis words that match the "
            "transcript. Mean absolute start / end error in ms over utterances"
            + (f" (± half the {boot.level:.0%} bootstrap interval)" if boot.resamples else "")
            + ", and the share of word boundaries within 50 / 100 / 200 ms. Bold: lowest error per model "
            "and language. Beyond the paper (it has no ground truth)."
        ),
        columns=["model", "lang", "map", "method", "words", "start error (ms)", "end error (ms)", "≤50 ms (%)",
                 "≤100 ms (%)", "≤200 ms (%)"],
        rows=[],
    )  # fmt: skip
    for path in files:
        run = run_of(path)
        df = read_tsv(path)
        start = len(table.rows)
        groups = sorted(df.groupby(["map", "method"]), key=lambda kv: (map_sort_key(kv[0][0]), kv[0][1]))
        for (name, method), g in groups:
            table.rows.append([
                run.model, run.src, name, method, int(g["words"].sum()),
                _ms_cell(g["start_ms"].to_numpy(float), boot), _ms_cell(g["end_ms"].to_numpy(float), boot),
                *[Cell(100 * float(np.nanmean(g[c])), digits=1) for c in ("within_50", "within_100", "within_200")],
            ])  # fmt: skip
        for col in (5, 6):
            mark_best(table, [(r, col) for r in range(start, len(table.rows))], higher_is_better=False)
        if start:
            table.midrules.append(start)
    return table


def _ms_cell(values: np.ndarray, boot: Bootstrap) -> Cell:
    cell = r_cell(values, boot)
    cell.digits = 0
    return cell
