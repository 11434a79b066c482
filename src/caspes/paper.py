"""The paper's tables and its claims check, built from the workflow's per-run files.

Every input path has the layout ``results/<model>/<src>-<tgt>/<split>/<kind>/<name>.tsv``
(:func:`run_of`), so a builder needs nothing but the list of files the workflow hands it.

Correlation files (rule ``correlate``) hold one row per utterance, pooling and (layer, head)
selection; the tables report the mean r over utterances with a defined r, and the number of
undefined ones goes into the table notes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .tables import Cell, Table, mark_best

__all__ = ["PAPER", "Bootstrap", "Claim", "Run", "r_cell", "build_table", "claims_check", "claims_markdown", "paired_tests", "run_of"]

#: Values reported by the paper (EuroParl-ST; base = monolingual en ASR), for side-by-side columns.
PAPER = {
    "table1_layers": [0.111, 0.178, 0.443, 0.546, 0.578, 0.588],
    "table1_heads": [0.546, 0.456, 0.455, 0.574, 0.529, 0.541, 0.525, 0.500],
    "table1_all": 0.577,
    "table3_base_layers": [0.105, 0.179, 0.602, 0.708, 0.745, 0.693],
    "table3_base_all": 0.752,
    "table4": {"avg2d": (0.459, 53.03), "max1d_avg1d": (0.565, 55.18), "max2d": (0.572, 57.04)},
    "table6": {0.9: (0.741, 58.20), 0.7: (0.746, 61.45), 0.5: (0.700, 57.30), 0.3: (0.614, 50.45), 0.1: (0.543, 44.34)},
    "discussion": {"ca": 41.2, "smx-max2d": 52.9, "smx": 91.3},
    "table5_base": {"wer": 9.5, "deletion": 91.3, "size": 29.7},
}
POOLING_NAMES = {"avg2d": "2D avg", "max1d_avg1d": "1D max + 1D avg", "max2d": "2D max"}
LANG_NAMES = {"en": "en", "it": "it"}


@dataclass(frozen=True)
class Run:
    """Where a per-run file comes from."""

    model: str
    src: str
    tgt: str
    split: str
    name: str

    @property
    def direction(self) -> str:
        return f"{self.src}-{self.tgt}"

    @property
    def task(self) -> str:
        return "ASR" if self.src == self.tgt else "ST"


def run_of(path: str | Path) -> Run:
    """Parse ``.../<model>/<src>-<tgt>/<split>/[<kind>/]<name>.<ext>`` (the last ``xx-yy`` folder)."""
    p = Path(path)
    parts = p.parts[:-1]
    for k in range(len(parts) - 2, 0, -1):
        if re.fullmatch(r"[a-z]{2,3}-[a-z]{2,3}", parts[k]):
            src, tgt = parts[k].split("-")
            return Run(parts[k - 1], src, tgt, parts[k + 1], p.stem)
    raise ValueError(f"{path}: not a per-run file (results/<model>/<src>-<tgt>/<split>/...)")


def _read(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=True)


def _layer_values(corr: pd.DataFrame, pooling: str) -> tuple[dict[int, np.ndarray], np.ndarray, int]:
    """Per-utterance r of each layer's head average, of the all-average, and the undefined count."""
    sel = corr[corr["pooling"] == pooling]
    layers = sel[(sel["head"] == "avg") & (sel["layer"] != "avg")]
    per_layer = {int(k): g["r"].to_numpy(dtype=float) for k, g in layers.groupby("layer")}
    overall = sel[(sel["layer"] == "avg") & (sel["head"] == "avg")]["r"].to_numpy(dtype=float)
    return per_layer, overall, int(sel["r"].isna().sum())


@dataclass(frozen=True)
class Bootstrap:
    """Confidence intervals of mean correlations: ``resamples`` 0 = none."""

    resamples: int = 0
    seed: int = 1
    level: float = 0.95


def r_cell(values: np.ndarray | None, boot: Bootstrap = Bootstrap()) -> Cell:
    """A table cell with the mean of the defined per-utterance r values and, when asked, their
    bootstrap interval (utterances resampled)."""
    if values is None:
        return Cell(None)
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return Cell(math.nan)
    if boot.resamples <= 0:
        return Cell(float(finite.mean()))
    from .bootstrap import bootstrap_ci

    ci = bootstrap_ci(finite, n_resamples=boot.resamples, seed=boot.seed, level=boot.level)
    return Cell(ci.mean, ci=(ci.low, ci.high))


def _read_corr(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", dtype={"layer": str, "head": str, "pooling": str})
    return df


def _undefined_note(count: int) -> list[str]:
    return [f"{count} utterance-level correlations were undefined (a constant map) and are not averaged in."] if count else []


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
        sel = _read_corr(path)
        sel = sel[sel["pooling"] == pooling]
        undefined += int(sel["r"].isna().sum())
        values = {key: g["r"].to_numpy(dtype=float) for key, g in sel.groupby(["layer", "head"])}
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
                + [r_cell(values.get((str(layer), str(h))), boot) for h in heads]
                + pad
                + [r_cell(values.get((str(layer), "avg")), boot)]
            )
        rows.append(
            [label, "l-AVG"]
            + [r_cell(values.get(("avg", str(h))), boot) for h in heads]
            + pad
            + [r_cell(values.get(("avg", "avg")), boot)]
        )
        table.rows = rows
        grid = [(r, c) for r in range(start, start + len(layers)) for c in range(2, 2 + len(heads))]
        mark_best(table, grid, style="bold")
        mark_best(table, [(r, 2 + n_heads) for r in range(start, start + len(layers))], style="underline")
        mark_best(table, [(start + len(layers), c) for c in range(2, 2 + len(heads))], style="underline")
    table.notes = _undefined_note(undefined)
    return table


def _layerwise(
    name: str, corr_files: Sequence[str], pooling: str, caption: str, boot: Bootstrap = Bootstrap()
) -> Table:
    """One row per model and direction: h-AVG r per layer and the all-average (l-AVG)."""
    entries = []
    undefined = 0
    for path in corr_files:
        run = run_of(path)
        per_layer, overall, undef = _layer_values(_read_corr(path), pooling)
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
            + [r_cell(per_layer.get(k), boot) for k in range(1, n_layers + 1)]
            + [r_cell(overall, boot)]
        )
        r = len(table.rows) - 1
        mark_best(table, [(r, c) for c in range(3, 4 + n_layers)], style="bold")
        mark_best(table, [(r, c) for c in range(3, 3 + len(per_layer))], style="underline")
    table.notes = _undefined_note(undefined)
    return table


def _deletion_auc(path: str | Path) -> tuple[float, str]:
    curve = _read(path)
    return float(curve["auc"].iloc[0]), str(curve["metric"].iloc[0])


def _size_auc(path: str | Path) -> float:
    return float(_read(path)["auc"].iloc[0])


def table4(corr_files: Sequence[str], deletion_files: Sequence[str], boot: Bootstrap = Bootstrap()) -> Table:
    """Aggregation ablation of SM^X (dev): layer-wise and l-AVG r per pooling, frame deletion AUC."""
    corr = pd.concat([_read_corr(p) for p in corr_files])
    deletions = {run_of(p).name.split("-", 1)[1]: _deletion_auc(p) for p in deletion_files}
    n_layers = 0
    body = []
    undefined = 0
    for pooling in ("avg2d", "max1d_avg1d", "max2d"):
        per_layer, overall, undef = _layer_values(corr, pooling)
        undefined += undef
        n_layers = max(n_layers, len(per_layer))
        auc, metric = deletions.get(pooling, (math.nan, "wer_max"))
        paper_r, paper_del = PAPER["table4"][pooling]
        body.append((pooling, per_layer, overall, auc, paper_r, paper_del, metric))
    metric = body[0][6]
    table = Table(
        name="table4",
        caption=(
            "Aggregation of SM^X to the encoder grid (ablation model, ablation split): Pearson r of the "
            "head-averaged cross-attention per layer and of the all-average (l-AVG), and the deletion AUC "
            f"of the pooled map ({'wer_max' if metric == 'wer_max' else 'BLEU'}; frames ranked, 5% steps). "
            "Bold: best per column; underline: best layer per row. Paper values: base, EuroParl-ST dev."
        ),
        columns=["aggregation", *[f"l{k}" for k in range(1, n_layers + 1)], "l-AVG", "deletion", "paper l-AVG",
                 "paper deletion"],
        rows=[],
    )  # fmt: skip
    for pooling, per_layer, overall, auc, paper_r, paper_del, _ in body:
        table.rows.append(
            [POOLING_NAMES[pooling], *[r_cell(per_layer.get(k), boot) for k in range(1, n_layers + 1)],
             r_cell(overall, boot),
             Cell(auc, digits=2), Cell(paper_r), Cell(paper_del, digits=2)]
        )  # fmt: skip
    for c in range(1, n_layers + 3):
        mark_best(table, [(r, c) for r in range(3)], higher_is_better=(c != n_layers + 2 or metric == "wer_max"))
    for r in range(3):
        mark_best(table, [(r, c) for c in range(1, 1 + n_layers)], style="underline")
    table.notes = _undefined_note(undefined)
    return table


def table5(quality_files: Sequence[str], deletion_files: Sequence[str], size_files: Sequence[str]) -> Table:
    """Quality of the models and of their explanations (main split)."""
    quality = {(run_of(p).model, run_of(p).direction): _read(p).iloc[0] for p in quality_files}
    dele = {(run_of(p).model, run_of(p).direction, run_of(p).name): _deletion_auc(p)[0] for p in deletion_files}
    size = {(run_of(p).model, run_of(p).direction, run_of(p).name): _size_auc(p) for p in size_files}
    maps = sorted({k[2] for k in dele}, key=lambda n: (n != "smx", n))
    columns = ["model", "direction", "task", "WER", "BLEU", "chrF", "COMET"]
    for m in maps:
        label = "SM^X" if m == "smx" else f"SM^H ({m.split('-', 1)[1]})"
        columns += [f"{label} deletion", f"{label} size"]
    table = Table(
        name="table5",
        caption=(
            "Model quality (WER for ASR; BLEU, chrF and COMET, when a local checkpoint is configured, for ST) "
            "and explanation quality: deletion AUC (wer_max for ASR, higher is better; BLEU for ST, lower is "
            "better) and size AUC (lower is more compact). SM^X deletion ranks single time-frequency cells, "
            f"SM^H deletion encoder steps. Paper (base, en): WER {PAPER['table5_base']['wer']}, deletion "
            f"{PAPER['table5_base']['deletion']}, size {PAPER['table5_base']['size']}."
        ),
        columns=columns,
        rows=[],
    )
    for model, direction in quality:
        q = quality[(model, direction)]
        task = "ASR" if direction.split("-")[0] == direction.split("-")[1] else "ST"
        row: list = [model, direction, task]
        for col in ("wer", "bleu", "chrf", "comet"):
            v = q.get(col) if col in q.index else None
            row.append(Cell(None if v is None or pd.isna(v) else float(v), digits=2))
        for m in maps:
            row += [Cell(dele.get((model, direction, m)), digits=2), Cell(size.get((model, direction, m)), digits=2)]
        table.rows.append(row)
    return table


def table6(corr_files: Sequence[str], deletion_files: Sequence[str], boot: Bootstrap = Bootstrap()) -> Table:
    """p_H ablation of SM^H (dev): layer-wise and l-AVG r, encoder-step deletion AUC."""
    by_p: dict[float, dict] = {}
    undefined = 0
    for path in corr_files:
        p = float(run_of(path).name.split("-p", 1)[1])
        per_layer, overall, undef = _layer_values(_read_corr(path), "none")
        undefined += undef
        by_p.setdefault(p, {})["corr"] = (per_layer, overall)
    metric = "wer_max"
    for path in deletion_files:
        p = float(run_of(path).name.split("-p", 1)[1])
        by_p.setdefault(p, {})["del"], metric = _deletion_auc(path)
    ps = sorted(by_p, reverse=True)
    n_layers = max((len(by_p[p]["corr"][0]) for p in ps), default=0)
    table = Table(
        name="table6",
        caption=(
            "Occlusion probability p_H of SM^H (ablation model, ablation split): Pearson r of the "
            "head-averaged cross-attention per layer and of the all-average (l-AVG), and the deletion AUC "
            "(encoder steps). Bold: best per column; underline: best layer per row. Paper: base, EuroParl-ST dev."
        ),
        columns=["p_H", *[f"l{k}" for k in range(1, n_layers + 1)], "l-AVG", "deletion", "paper l-AVG",
                 "paper deletion"],
        rows=[],
    )  # fmt: skip
    for p in ps:
        per_layer, overall = by_p[p]["corr"]
        paper = PAPER["table6"].get(round(p, 3), (None, None))
        table.rows.append(
            [f"{p:g}", *[r_cell(per_layer.get(k), boot) for k in range(1, n_layers + 1)], r_cell(overall, boot),
             Cell(by_p[p].get("del"), digits=2), Cell(paper[0]), Cell(paper[1], digits=2)]
        )  # fmt: skip
    for c in range(1, n_layers + 3):
        mark_best(table, [(r, c) for r in range(len(ps))], higher_is_better=(c != n_layers + 2 or metric == "wer_max"))
    for r in range(len(ps)):
        mark_best(table, [(r, c) for c in range(1, 1 + n_layers)], style="underline")
    table.notes = _undefined_note(undefined)
    return table


def discussion(deletion_files: Sequence[str]) -> Table:
    """Deletion AUC of cross-attention vs frequency-aggregated SM^X vs full-resolution SM^X."""
    labels = {"ca": "CA (all layers and heads)", "smx-max2d": "SM^X, 2D max to T'", "smx": "SM^X, full resolution"}
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
    """Build one paper table from the workflow's files (see :mod:`caspes.paper`)."""
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
        return table5(inputs["quality"], inputs["deletion"], inputs["sizes"])
    if name == "table6":
        return table6(inputs["correlation"], inputs["deletion"], boot)
    if name == "discussion":
        return discussion(inputs["deletion"])
    if name == "timestamps":
        return timestamps_table(inputs["timestamps"], boot)
    raise ValueError(f"unknown table {name!r}")


# --------------------------------------------------------------------------- claims
@dataclass
class Claim:
    """One claim of the paper: its figure, ours, and whether it holds on this run."""

    claim: str
    paper: str
    ours: str
    holds: bool | None  # None: cannot be checked on this run


def _csv(paths: Mapping[str, str | Path], name: str) -> pd.DataFrame | None:
    return pd.read_csv(paths[name]) if name in paths else None


def _layer_cols(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("l") and c[1:].isdigit()]


def _fmt(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _tests_text(tests: Sequence[Mapping[str, object]], comparison: str) -> str:
    """' (paired bootstrap: run Δ ±x p=y; ...)' for the tests of one comparison, '' if none."""
    chosen = [t for t in tests if str(t["comparison"]).startswith(comparison)]
    if not chosen:
        return ""
    parts = [f"{t['run']} {t['map']}: Δ {float(t['difference']):+.3f}, p = {float(t['p']):.3f}" for t in chosen]
    return ". Paired bootstrap over utterances: " + "; ".join(parts)


def _best(df: pd.DataFrame, column: str, label: str) -> list:
    """Labels of the rows holding the column's maximum (all of them on a tie; none if all NaN)."""
    values = pd.to_numeric(df[column], errors="coerce")
    if values.isna().all():
        return []
    return df.loc[values == values.max(), label].tolist()


def _per_utterance(df: pd.DataFrame, pooling: str, layer: str, head: str) -> pd.Series:
    sel = df[(df["pooling"] == pooling) & (df["layer"] == layer) & (df["head"] == head)]
    return sel.set_index("utterance")["r"].astype(float)


def paired_tests(
    correlations: Sequence[str | Path], pooling: str = "max2d", boot: Bootstrap = Bootstrap(resamples=1000)
) -> list[dict[str, object]]:
    """Paired bootstrap tests on per-utterance r (same utterances, resampled together):

    * ``SM^H vs SM^X``: r(CA, SM^H) - r(CA, SM^X) of the all-average CA, per run with both maps;
    * ``l-AVG vs best layer``: all-average minus the best head-averaged layer, per run and map.

    Returns rows: run, map, comparison, difference (mean over utterances), p (two-sided).
    """
    from .bootstrap import paired_bootstrap_pvalue

    by_run: dict[str, dict[str, pd.DataFrame]] = {}
    for path in correlations:  # each file read once
        run = run_of(path)
        by_run.setdefault(f"{run.model} {run.direction} {run.split}", {})[run.name] = _read_corr(path)
    rows: list[dict[str, object]] = []
    for label, maps in by_run.items():
        smh = [m for m in maps if m.startswith("smh-p")]
        if "smx" in maps and smh:
            a = _per_utterance(maps[smh[0]], "none", "avg", "avg")
            b = _per_utterance(maps["smx"], pooling, "avg", "avg").reindex(a.index)
            diff, p = paired_bootstrap_pvalue(a.to_numpy(), b.to_numpy(), boot.resamples, boot.seed)
            rows.append({"run": label, "map": f"{smh[0]} vs smx", "comparison": "SM^H vs SM^X", "difference": diff,
                         "p": p})  # fmt: skip
        for name, corr in maps.items():
            pool = pooling if name == "smx" else "none"
            layers = corr[(corr["pooling"] == pool) & (corr["head"] == "avg") & (corr["layer"] != "avg")]
            if layers.empty:
                continue
            best = str(layers.groupby("layer")["r"].mean().idxmax())
            a = _per_utterance(corr, pool, "avg", "avg")
            b = _per_utterance(corr, pool, best, "avg").reindex(a.index)
            diff, p = paired_bootstrap_pvalue(a.to_numpy(), b.to_numpy(), boot.resamples, boot.seed)
            rows.append({"run": label, "map": name, "comparison": f"l-AVG vs best layer (l{best})",
                         "difference": diff, "p": p})  # fmt: skip
    return rows


def claims_check(
    paths: Mapping[str, str | Path], p_h: float = 0.7, tests: Sequence[Mapping[str, object]] = ()
) -> list[Claim]:
    """Check the paper's claims against this run's tables (``paths``: table name -> CSV) and, when
    given, the paired bootstrap tests of :func:`paired_tests`."""
    claims: list[Claim] = []
    t1, t2, t3 = _csv(paths, "table1"), _csv(paths, "table2"), _csv(paths, "table3")
    t4, t6, disc = _csv(paths, "table4"), _csv(paths, "table6"), _csv(paths, "discussion")

    # layer-wise rows of every CA-vs-SM table: (label, {layer: r}, l-AVG)
    rows_x: list[tuple[str, list[float], float]] = []
    if t1 is not None:
        for run, block in t1.groupby("run", sort=False):
            layers = block[block["layer"] != "l-AVG"]["h-AVG"].tolist()
            rows_x.append((f"{run} (SM^X)", layers, float(block[block["layer"] == "l-AVG"]["h-AVG"].iloc[0])))
    if t2 is not None:
        for _, r in t2.iterrows():
            vals = [float(r[c]) for c in _layer_cols(t2) if not pd.isna(r[c])]
            rows_x.append((f"{r['model']} {r['task']} (SM^X)", vals, float(r["l-AVG"])))
    rows_h: list[tuple[str, list[float], float]] = []
    if t3 is not None:
        for _, r in t3.iterrows():
            vals = [float(r[c]) for c in _layer_cols(t3) if not pd.isna(r[c])]
            rows_h.append((f"{r['model']} {r['task']} (SM^H)", vals, float(r["l-AVG"])))

    both = [row for row in rows_x + rows_h if len(row[1]) >= 2]
    if both:
        diffs = [(label, vals[-1] - vals[0]) for label, vals, _ in both]
        claims.append(Claim(
            "The last decoder layers correlate more with saliency than the first ones (§5.1, §5.2).",
            "base SM^X: l1 0.111 vs l6 0.588; SM^H: l1 0.105 vs l6 0.693",
            "; ".join(f"{label}: last − first = {d:+.3f}" for label, d in diffs),
            all(d > 0 for _, d in diffs),
        ))  # fmt: skip
    if t1 is not None:
        heads = [c for c in t1.columns if c.startswith("h") and c[1:].isdigit()]
        layers = t1[t1["layer"] != "l-AVG"]
        wins = [(float(r["h-AVG"]) >= max(float(r[h]) for h in heads)) for _, r in layers.iterrows()]
        claims.append(Claim(
            "Averaging the heads of a layer beats selecting any single head of it (Table 1).",
            "holds for every layer of base",
            f"h-AVG ≥ best single head in {sum(wins)} of {len(wins)} layers",
            all(wins),
        ))  # fmt: skip
    if both:
        gaps = [(label, avg - max(vals)) for label, vals, avg in both]
        claims.append(Claim(
            "Averaging over layers and heads gives the best or near-best correlation (within 0.02 of the "
            "best layer).",
            "l-AVG best or within 0.006 of the best layer in every setting",
            "; ".join(f"{label}: l-AVG − best layer = {g:+.3f}" for label, g in gaps)
            + _tests_text(tests, "l-AVG vs best layer"),
            all(g >= -0.02 for _, g in gaps),
        ))  # fmt: skip
    if rows_x and rows_h:
        x = {label.rsplit(" (", 1)[0]: avg for label, _, avg in rows_x}
        pairs = [(k, x[k], avg) for k, avg in ((lab.rsplit(" (", 1)[0], a) for lab, _, a in rows_h) if k in x]
        if t1 is not None:
            for run, block in t1.groupby("run", sort=False):
                model = str(run).split()[0]
                h = [avg for lab, _, avg in rows_h if lab.startswith(f"{model} ASR")]
                if h:
                    pairs.append((str(run), float(block[block["layer"] == "l-AVG"]["h-AVG"].iloc[0]), h[0]))
        claims.append(Claim(
            "CA correlates more with the encoder-output saliency SM^H than with the input saliency SM^X, for "
            "every model, language and task (context mixing; Tables 2-3).",
            "higher for all settings, by 0.03-0.18",
            "; ".join(f"{k}: SM^H {h:.3f} vs SM^X {xv:.3f}" for k, xv, h in pairs)
            + _tests_text(tests, "SM^H vs SM^X"),
            bool(pairs) and all(h > xv for _, xv, h in pairs),
        ))  # fmt: skip
    if rows_x:
        vals = [avg for _, _, avg in rows_x]
        claims.append(Claim(
            "Cross-attention is 'half explanation': its l-AVG correlation with SM^X is moderate to strong but "
            "far from 1 (0.4 ≤ r ≤ 0.8).",
            "0.49-0.63 (about 50% of the input relevance)",
            f"{min(vals):.3f}-{max(vals):.3f}",
            all(0.4 <= v <= 0.8 for v in vals),
        ))  # fmt: skip
    if rows_h:
        vals = [avg for _, _, avg in rows_h]
        claims.append(Claim(
            "Even against SM^H, CA accounts for only part of the saliency (r ≤ 0.8).",
            "0.52-0.75",
            f"{min(vals):.3f}-{max(vals):.3f}",
            all(v <= 0.8 for v in vals),
        ))  # fmt: skip
    if t4 is not None:
        best_r = _best(t4, "l-AVG", "aggregation")
        best_d = _best(t4, "deletion", "aggregation")
        claims.append(Claim(
            "2D max pooling is the best aggregation of SM^X: highest l-AVG r and highest deletion (Table 4).",
            "2D max: r 0.572, deletion 57.04 (2D avg 0.459 / 53.03; 1D max+1D avg 0.565 / 55.18)",
            "; ".join(f"{r['aggregation']}: r {_fmt(r['l-AVG'])}, deletion {_fmt(r['deletion'], 2)}"
                      for _, r in t4.iterrows()),
            best_r == ["2D max"] and best_d == ["2D max"],
        ))  # fmt: skip
    if t6 is not None:
        best_d = [float(p) for p in _best(t6, "deletion", "p_H")]
        best_r = [float(p) for p in _best(t6, "l-AVG", "p_H")]
        claims.append(Claim(
            f"p_H = {p_h:g} is the best occlusion probability on dev, for deletion and for the CA-SM^H "
            "correlation (Table 6).",
            "p_H 0.7: deletion 61.45, l-AVG 0.746 (best of 0.1-0.9)",
            f"best deletion at p_H {'/'.join(f'{p:g}' for p in best_d)}, best l-AVG r at p_H "
            f"{'/'.join(f'{p:g}' for p in best_r)}",
            best_d == [p_h] and best_r == [p_h],
        ))  # fmt: skip
    if disc is not None:
        for run, block in disc.groupby("run", sort=False):
            d = dict(zip(block["map"], block["deletion"]))
            ca, pooled, full = (d.get(k, math.nan) for k in
                                ("CA (all layers and heads)", "SM^X, 2D max to T'", "SM^X, full resolution"))  # fmt: skip
            claims.append(Claim(
                f"Deletion ranks CA < frequency-aggregated SM^X < full-resolution SM^X (Discussion; {run}).",
                "41.2 < 52.9 < 91.3",
                f"{_fmt(ca, 1)}, {_fmt(pooled, 1)}, {_fmt(full, 1)}",
                bool(ca < pooled < full),
            ))  # fmt: skip
    ts = _csv(paths, "timestamps")
    if ts is not None and not ts.empty:
        dtw = ts[ts["method"] == "dtw"]
        col = "start error (ms)"
        parts, verdicts = [], []
        for (model, lang), g in dtw.groupby(["model", "lang"], sort=False):
            errors = dict(zip(g["map"], pd.to_numeric(g[col], errors="coerce")))
            layers = {k: v for k, v in errors.items() if str(k).startswith("CA l") and not pd.isna(v)}
            if not layers or pd.isna(errors.get("CA all", math.nan)):
                continue
            best_layer = min(layers, key=layers.get)
            verdicts.append(errors["CA all"] <= layers[best_layer])
            parts.append(f"{model} {lang}: CA all {errors['CA all']:.0f} ms vs best layer ({best_layer}) "
                         f"{layers[best_layer]:.0f} ms")  # fmt: skip
        best = ts.loc[pd.to_numeric(ts[col], errors="coerce").idxmin()] if ts[col].notna().any() else None
        if parts:
            claims.append(Claim(
                "Averaging cross-attention over layers and heads could improve timestamp estimation (Discussion; "
                "tested here against ground-truth word times, DTW word-start error).",
                "suggested, not measured (no ground truth)",
                "; ".join(parts)
                + (f". Lowest start error of all: {best['map']} with {best['method']} ({best[col]:.0f} ms, "
                   f"{best['model']} {best['lang']})" if best is not None else ""),
                all(verdicts),
            ))  # fmt: skip
    return claims


def claims_markdown(claims: Sequence[Claim]) -> str:
    """The claims check as a Markdown table with a summary line."""
    mark = {True: "yes", False: "**no**", None: "n/a"}
    held = sum(c.holds is True for c in claims)
    lines = [
        "# Claims check",
        "",
        f"{held} of {len(claims)} claims of the paper hold on this run. Paper figures are the paper's "
        "(EuroParl-ST, full-size models); ours come from this run's tables in this folder.",
        "",
        "| # | claim | paper | this run | holds |",
        "|---:|---|---|---|---|",
    ]
    for k, c in enumerate(claims, 1):
        cells = [c.claim, c.paper, c.ours]
        cells = [x.replace("|", "\\|") for x in cells]
        lines.append(f"| {k} | {cells[0]} | {cells[1]} | {cells[2]} | {mark[c.holds]} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figures
def figure_maps(
    xattn_path: str | Path,
    smh_path: str | Path,
    index: int,
    smx_path: str | Path | None = None,
    pooling: str = "max2d",
    ca_norm: str = "frame",
    sm_norm: str = "token",
) -> dict:
    """The maps one figure shows for the ``index``-th explained utterance, content rows only, each
    normalised as it is correlated: CA (all layers and heads), SM^H, and SM^X (full, and pooled)."""
    from .analysis import Selection, content_rows, mean_attention, normalise, pool_saliency
    from .saliency import SaliencyStore
    from .spes import normalize_per_token
    from .xattn import CrossAttentionStore

    with SaliencyStore(smh_path) as smh_store, CrossAttentionStore(xattn_path) as xattn:
        if not 0 <= index < len(smh_store):
            raise ValueError(f"analysis.figure_utterance {index} is out of range: {smh_path} has {len(smh_store)}")
        uid = smh_store.ids[index]
        ca_rec, smh = xattn[uid], smh_store[uid]
    keep = content_rows(ca_rec.roles)
    att = ca_rec.attention
    pairs = Selection("avg", "avg").pairs(*att.shape[:2])
    out = {
        "id": uid,
        "tokens": [p for p, k in zip(ca_rec.pieces, keep) if k],
        "ca": normalise(mean_attention(att, pairs)[keep], ca_norm),
        "smh": normalise(smh.saliency[keep], sm_norm),
    }
    if smx_path is not None:
        with SaliencyStore(smx_path) as smx_store:
            smx = smx_store[uid].saliency[keep]
        out["smx"] = normalize_per_token(smx)
        out["smx_pooled"] = normalise(pool_saliency(smx, pooling), sm_norm)
    return out


# --------------------------------------------------------------------------- word timestamps
def _map_key(name: str) -> tuple[int, int]:
    if name.startswith("CA l"):
        return (0, int(name[4:]))
    return (1, ("CA all", "SM^X", "SM^H").index(name) if name in ("CA all", "SM^X", "SM^H") else 9)


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
        df = pd.read_csv(path, sep="\t")
        start = len(table.rows)
        groups = sorted(df.groupby(["map", "method"]), key=lambda kv: (_map_key(kv[0][0]), kv[0][1]))
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


def timestamp_bars(files: Sequence[str | Path], bootstrap: Mapping[str, object]) -> dict:
    """Figure data: per model and language, the mean DTW word-start error of each map with its
    bootstrap interval (``groups[label][map] = (mean, low, high)``)."""
    boot = Bootstrap(**bootstrap)  # type: ignore[arg-type]
    groups: dict[str, dict[str, tuple[float, float, float]]] = {}
    for path in files:
        run = run_of(path)
        df = pd.read_csv(path, sep="\t")
        df = df[df["method"] == "dtw"]
        bars = {}
        for name in sorted(df["map"].unique(), key=_map_key):
            cell = r_cell(df[df["map"] == name]["start_ms"].to_numpy(float), boot)
            low, high = cell.ci if cell.ci else (math.nan, math.nan)
            bars[name] = (float(cell.value), low, high)
        groups[f"{run.model} {run.src}"] = bars
    return groups
