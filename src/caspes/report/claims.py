"""The claims check: each of the paper's claims beside what this study measured.

:func:`load_claim_inputs` reads this run's paper tables once (:class:`ClaimInputs`, with the
layer-wise rows of Tables 1-3 as :class:`LayerRow` s); each claim is a function of those inputs
returning its :class:`Claim` (as a list: empty when the tables cannot check it, one per run for the
Discussion's deletion ranking), and :data:`CLAIMS` lists them in the order of the check.
:func:`paired_tests` adds paired bootstrap tests on the per-utterance correlations;
:func:`write_claims` is the rule ``claims_check``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from caspes.analysis.bootstrap import paired_bootstrap_pvalue
from caspes.core.atomic import atomic_open, atomic_write_text
from caspes.report.results import Bootstrap, read_correlations, run_of

__all__ = [
    "Claim",
    "LayerRow",
    "ClaimInputs",
    "CLAIMS",
    "load_claim_inputs",
    "paired_tests",
    "claims_check",
    "claims_markdown",
    "write_claims",
]

log = logging.getLogger(__name__)


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


def _paired_row(
    run: str, name: str, comparison: str, a: pd.Series, b: pd.Series, boot: Bootstrap
) -> dict[str, object]:
    """One row of :func:`paired_tests`: mean of ``a - b`` over ``a``'s utterances and its p value."""
    diff, p = paired_bootstrap_pvalue(a.to_numpy(), b.reindex(a.index).to_numpy(), boot.resamples, boot.seed)
    return {"run": run, "map": name, "comparison": comparison, "difference": diff, "p": p}


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
            b = _per_utterance(maps["smx"], pooling, "avg", "avg")
            rows.append(_paired_row(label, f"{smh[0]} vs smx", "SM^H vs SM^X", a, b, boot))
        for name, corr in maps.items():
            pool = pooling if name == "smx" else "none"
            layers = corr[(corr["pooling"] == pool) & (corr["head"] == "avg") & (corr["layer"] != "avg")]
            if layers.empty:
                continue
            best = str(layers.groupby("layer")["r"].mean().idxmax())
            a = _per_utterance(corr, pool, "avg", "avg")
            b = _per_utterance(corr, pool, best, "avg")
            rows.append(_paired_row(label, name, f"l-AVG vs best layer (l{best})", a, b, boot))
    return rows


def write_claims(
    tables: Sequence[str | Path],
    correlations: Sequence[str | Path],
    claims_path: str | Path,
    tests_path: str | Path,
    p_h: float,
    pooling: str,
    bootstrap: Mapping[str, object],
) -> list[Claim]:
    """Rule ``claims_check``: the paired tests of :func:`paired_tests` (none when
    ``bootstrap["resamples"]`` is 0) as CSV at ``tests_path``, and :func:`claims_check` on the
    ``tables`` (CSVs, each named by its stem) as Markdown at ``claims_path``. Logs the Markdown and
    returns the claims."""
    boot = Bootstrap(**bootstrap)  # type: ignore[arg-type]
    tests = paired_tests(correlations, pooling, boot) if boot.resamples else []
    with atomic_open(tests_path, "w", newline="", encoding="utf-8") as f:
        pd.DataFrame(tests, columns=["run", "map", "comparison", "difference", "p"]).to_csv(f, index=False)
    claims = claims_check({Path(t).stem: t for t in tables}, p_h, tests)
    text = claims_markdown(claims)
    atomic_write_text(claims_path, text)
    log.info("\n%s", text)
    return claims


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class LayerRow:
    """One CA-vs-saliency setting of Tables 1-3: r per decoder layer (heads averaged, first to last)
    and the all-average l-AVG, against ``saliency`` ("SM^X" or "SM^H")."""

    setting: str
    saliency: str
    layers: list[float]
    all_average: float

    @property
    def label(self) -> str:
        """``<setting> (<saliency>)``, as the claims print it."""
        return f"{self.setting} ({self.saliency})"


@dataclass
class ClaimInputs:
    """What the claims are checked on: this run's tables (``None`` where a table is not built),
    their layer-wise rows, the paired bootstrap tests and the configured p_H."""

    table1: pd.DataFrame | None
    table4: pd.DataFrame | None
    table6: pd.DataFrame | None
    discussion: pd.DataFrame | None
    timestamps: pd.DataFrame | None
    table1_rows: list[LayerRow]
    table2_rows: list[LayerRow]
    table3_rows: list[LayerRow]
    tests: Sequence[Mapping[str, object]] = ()
    p_h: float = 0.7

    @property
    def rows_x(self) -> list[LayerRow]:
        """The CA-vs-SM^X rows: Table 1's runs, then Table 2's."""
        return self.table1_rows + self.table2_rows

    @property
    def rows_h(self) -> list[LayerRow]:
        """The CA-vs-SM^H rows (Table 3's)."""
        return self.table3_rows

    @property
    def layerwise(self) -> list[LayerRow]:
        """Every row (SM^X, then SM^H) with at least two layers."""
        return [row for row in self.rows_x + self.rows_h if len(row.layers) >= 2]


def _table1_rows(t1: pd.DataFrame | None) -> list[LayerRow]:
    """Table 1's h-AVG column per run: the layers, and the l-AVG row."""
    if t1 is None:
        return []
    rows = []
    for run, block in t1.groupby("run", sort=False):
        layers = block[block["layer"] != "l-AVG"]["h-AVG"].tolist()
        rows.append(
            LayerRow(str(run), "SM^X", layers, float(block[block["layer"] == "l-AVG"]["h-AVG"].iloc[0]))
        )
    return rows


def _layerwise_rows(table: pd.DataFrame | None, saliency: str) -> list[LayerRow]:
    """The rows of Table 2 or 3 (one per model and task; undefined layers left out)."""
    if table is None:
        return []
    rows = []
    for _, r in table.iterrows():
        vals = [float(r[c]) for c in _layer_cols(table) if not pd.isna(r[c])]
        rows.append(LayerRow(f"{r['model']} {r['task']}", saliency, vals, float(r["l-AVG"])))
    return rows


def load_claim_inputs(
    paths: Mapping[str, str | Path], p_h: float = 0.7, tests: Sequence[Mapping[str, object]] = ()
) -> ClaimInputs:
    """Read the tables the claims need (``paths``: table name -> CSV; absent names are ``None``)."""
    t1 = _csv(paths, "table1")
    return ClaimInputs(
        table1=t1,
        table4=_csv(paths, "table4"),
        table6=_csv(paths, "table6"),
        discussion=_csv(paths, "discussion"),
        timestamps=_csv(paths, "timestamps"),
        table1_rows=_table1_rows(t1),
        table2_rows=_layerwise_rows(_csv(paths, "table2"), "SM^X"),
        table3_rows=_layerwise_rows(_csv(paths, "table3"), "SM^H"),
        tests=tests,
        p_h=p_h,
    )


# --------------------------------------------------------------------------- the claims
# Each check returns its claim, as a list: empty when this run's tables cannot check it, one claim
# per run for the deletion ranking.


def last_layers_claim(inp: ClaimInputs) -> list[Claim]:
    """The last decoder layer correlates more than the first, in every layer-wise setting."""
    if not inp.layerwise:
        return []
    diffs = [(row.label, row.layers[-1] - row.layers[0]) for row in inp.layerwise]
    return [Claim(
        "The last decoder layers correlate more with saliency than the first ones (§5.1, §5.2).",
        "base SM^X: l1 0.111 vs l6 0.588; SM^H: l1 0.105 vs l6 0.693",
        "; ".join(f"{label}: last − first = {d:+.3f}" for label, d in diffs),
        all(d > 0 for _, d in diffs),
    )]  # fmt: skip


def head_average_claim(inp: ClaimInputs) -> list[Claim]:
    """Table 1: each layer's head average is at least its best single head."""
    t1 = inp.table1
    if t1 is None:
        return []
    heads = [c for c in t1.columns if c.startswith("h") and c[1:].isdigit()]
    layers = t1[t1["layer"] != "l-AVG"]
    wins = [(float(r["h-AVG"]) >= max(float(r[h]) for h in heads)) for _, r in layers.iterrows()]
    return [Claim(
        "Averaging the heads of a layer beats selecting any single head of it (Table 1).",
        "holds for every layer of base",
        f"h-AVG ≥ best single head in {sum(wins)} of {len(wins)} layers",
        all(wins),
    )]  # fmt: skip


def all_average_claim(inp: ClaimInputs) -> list[Claim]:
    """l-AVG is within 0.02 of the best layer in every layer-wise setting (with the paired tests)."""
    if not inp.layerwise:
        return []
    gaps = [(row.label, row.all_average - max(row.layers)) for row in inp.layerwise]
    return [Claim(
        "Averaging over layers and heads gives the best or near-best correlation (within 0.02 of the "
        "best layer).",
        "l-AVG best or within 0.006 of the best layer in every setting",
        "; ".join(f"{label}: l-AVG − best layer = {g:+.3f}" for label, g in gaps)
        + _tests_text(inp.tests, "l-AVG vs best layer"),
        all(g >= -0.02 for _, g in gaps),
    )]  # fmt: skip


def _smh_smx_pairs(inp: ClaimInputs) -> list[tuple[str, float, float]]:
    """(setting, l-AVG vs SM^X, l-AVG vs SM^H) of every setting with both: Table 2 settings by name,
    Table 1's runs paired with their model's first ASR row of Table 3."""
    x = {row.setting: row.all_average for row in inp.rows_x}
    pairs = [(row.setting, x[row.setting], row.all_average) for row in inp.rows_h if row.setting in x]
    for row in inp.table1_rows:
        model = row.setting.split()[0]
        h = [r.all_average for r in inp.rows_h if r.label.startswith(f"{model} ASR")]
        if h:
            pairs.append((row.setting, row.all_average, h[0]))
    return pairs


def smh_over_smx_claim(inp: ClaimInputs) -> list[Claim]:
    """CA correlates more with SM^H than with SM^X in every setting with both (context mixing)."""
    if not (inp.rows_x and inp.rows_h):
        return []
    pairs = _smh_smx_pairs(inp)
    return [Claim(
        "CA correlates more with the encoder-output saliency SM^H than with the input saliency SM^X, for "
        "every model, language and task (context mixing; Tables 2-3).",
        "higher for all settings, by 0.03-0.18",
        "; ".join(f"{k}: SM^H {h:.3f} vs SM^X {xv:.3f}" for k, xv, h in pairs)
        + _tests_text(inp.tests, "SM^H vs SM^X"),
        bool(pairs) and all(h > xv for _, xv, h in pairs),
    )]  # fmt: skip


def _all_average_range(
    rows: Sequence[LayerRow], claim: str, paper: str, low: float, high: float
) -> list[Claim]:
    """The claim that the l-AVG r of every row lies in ``[low, high]`` (none without rows)."""
    if not rows:
        return []
    vals = [row.all_average for row in rows]
    return [Claim(claim, paper, f"{min(vals):.3f}-{max(vals):.3f}", all(low <= v <= high for v in vals))]


def half_explanation_claim(inp: ClaimInputs) -> list[Claim]:
    """Every l-AVG correlation with SM^X lies in [0.4, 0.8]."""
    return _all_average_range(
        inp.rows_x,
        "Cross-attention is 'half explanation': its l-AVG correlation with SM^X is moderate to strong but "
        "far from 1 (0.4 ≤ r ≤ 0.8).",
        "0.49-0.63 (about 50% of the input relevance)",
        0.4,
        0.8,
    )


def smh_partial_claim(inp: ClaimInputs) -> list[Claim]:
    """Every l-AVG correlation with SM^H is at most 0.8."""
    return _all_average_range(
        inp.rows_h,
        "Even against SM^H, CA accounts for only part of the saliency (r ≤ 0.8).",
        "0.52-0.75",
        -math.inf,
        0.8,
    )


def aggregation_claim(inp: ClaimInputs) -> list[Claim]:
    """Table 4: 2D max pooling alone has the highest l-AVG r and the highest deletion AUC."""
    t4 = inp.table4
    if t4 is None:
        return []
    best_r = _best(t4, "l-AVG", "aggregation")
    best_d = _best(t4, "deletion", "aggregation")
    return [Claim(
        "2D max pooling is the best aggregation of SM^X: highest l-AVG r and highest deletion (Table 4).",
        "2D max: r 0.572, deletion 57.04 (2D avg 0.459 / 53.03; 1D max+1D avg 0.565 / 55.18)",
        "; ".join(f"{r['aggregation']}: r {_fmt(r['l-AVG'])}, deletion {_fmt(r['deletion'], 2)}"
                  for _, r in t4.iterrows()),
        best_r == ["2D max"] and best_d == ["2D max"],
    )]  # fmt: skip


def p_h_claim(inp: ClaimInputs) -> list[Claim]:
    """Table 6: the configured p_H alone has the best deletion AUC and the best l-AVG r."""
    t6 = inp.table6
    if t6 is None:
        return []
    best_d = [float(p) for p in _best(t6, "deletion", "p_H")]
    best_r = [float(p) for p in _best(t6, "l-AVG", "p_H")]
    return [Claim(
        f"p_H = {inp.p_h:g} is the best occlusion probability on dev, for deletion and for the CA-SM^H "
        "correlation (Table 6).",
        "p_H 0.7: deletion 61.45, l-AVG 0.746 (best of 0.1-0.9)",
        f"best deletion at p_H {'/'.join(f'{p:g}' for p in best_d)}, best l-AVG r at p_H "
        f"{'/'.join(f'{p:g}' for p in best_r)}",
        best_d == [inp.p_h] and best_r == [inp.p_h],
    )]  # fmt: skip


def deletion_ranking_claims(inp: ClaimInputs) -> list[Claim]:
    """Discussion table, one claim per run: deletion AUC of CA < pooled SM^X < full SM^X."""
    if inp.discussion is None:
        return []
    claims = []
    for run, block in inp.discussion.groupby("run", sort=False):
        d = dict(zip(block["map"], block["deletion"]))
        ca, pooled, full = (d.get(k, math.nan) for k in
                            ("CA (all layers and heads)", "SM^X, 2D max to T'", "SM^X, full resolution"))  # fmt: skip
        claims.append(Claim(
            f"Deletion ranks CA < frequency-aggregated SM^X < full-resolution SM^X (Discussion; {run}).",
            "41.2 < 52.9 < 91.3",
            f"{_fmt(ca, 1)}, {_fmt(pooled, 1)}, {_fmt(full, 1)}",
            bool(ca < pooled < full),
        ))  # fmt: skip
    return claims


def _timestamp_verdicts(ts: pd.DataFrame, col: str) -> tuple[list[str], list[bool]]:
    """Per model and language (DTW rows): the text comparing CA all with the best single layer, and
    whether CA all is at least as good; settings without both are left out."""
    parts, verdicts = [], []
    for (model, lang), g in ts[ts["method"] == "dtw"].groupby(["model", "lang"], sort=False):
        errors = dict(zip(g["map"], pd.to_numeric(g[col], errors="coerce")))
        layers = {k: v for k, v in errors.items() if str(k).startswith("CA l") and not pd.isna(v)}
        if not layers or pd.isna(errors.get("CA all", math.nan)):
            continue
        best_layer = min(layers, key=layers.get)
        verdicts.append(errors["CA all"] <= layers[best_layer])
        parts.append(f"{model} {lang}: CA all {errors['CA all']:.0f} ms vs best layer ({best_layer}) "
                     f"{layers[best_layer]:.0f} ms")  # fmt: skip
    return parts, verdicts


def timestamps_claim(inp: ClaimInputs) -> list[Claim]:
    """Timestamps table (beyond the paper): CA all has a DTW word-start error no larger than the best
    single layer's, per model and language."""
    ts, col = inp.timestamps, "start error (ms)"
    if ts is None or ts.empty:
        return []
    parts, verdicts = _timestamp_verdicts(ts, col)
    best = ts.loc[pd.to_numeric(ts[col], errors="coerce").idxmin()] if ts[col].notna().any() else None
    if not parts:
        return []
    return [Claim(
        "Averaging cross-attention over layers and heads could improve timestamp estimation (Discussion; "
        "tested here against ground-truth word times, DTW word-start error).",
        "suggested, not measured (no ground truth)",
        "; ".join(parts)
        + (f". Lowest start error of all: {best['map']} with {best['method']} ({best[col]:.0f} ms, "
           f"{best['model']} {best['lang']})" if best is not None else ""),
        all(verdicts),
    )]  # fmt: skip


#: The claims in the order of the claims check; each takes the :class:`ClaimInputs`.
CLAIMS: list[Callable[[ClaimInputs], list[Claim]]] = [
    last_layers_claim,
    head_average_claim,
    all_average_claim,
    smh_over_smx_claim,
    half_explanation_claim,
    smh_partial_claim,
    aggregation_claim,
    p_h_claim,
    deletion_ranking_claims,
    timestamps_claim,
]


def claims_check(
    paths: Mapping[str, str | Path], p_h: float = 0.7, tests: Sequence[Mapping[str, object]] = ()
) -> list[Claim]:
    """Check the paper's claims against this run's tables (``paths``: table name -> CSV) and, when
    given, the paired bootstrap tests of :func:`paired_tests`: every check of :data:`CLAIMS` in turn,
    those the tables cannot check left out."""
    inputs = load_claim_inputs(paths, p_h, tests)
    return [claim for check in CLAIMS for claim in check(inputs)]


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
