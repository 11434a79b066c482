"""The claims check: each of the paper's claims beside what this study measured."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from caspes.analysis.bootstrap import paired_bootstrap_pvalue
from caspes.report.results import Bootstrap, read_correlations, run_of

__all__ = ["Claim", "paired_tests", "claims_check", "claims_markdown"]


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
    parts = [
        f"{t['run']} {t['map']}: Δ {float(t['difference']):+.3f}, p = {float(t['p']):.3f}" for t in chosen
    ]
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

    by_run: dict[str, dict[str, pd.DataFrame]] = {}
    for path in correlations:  # each file read once
        run = run_of(path)
        by_run.setdefault(f"{run.model} {run.direction} {run.split}", {})[run.name] = read_correlations(path)
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
