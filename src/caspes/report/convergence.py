"""The convergence output (rule ``convergence``): ``results/paper/convergence.{csv,md,tex,png,pdf}``
from the per-utterance file of :mod:`caspes.analysis.convergence`.

Per map and budget: the mean r(CA l-AVG, SM) over the utterances (with its bootstrap interval),
the mean split-half r and the mean Spearman-Brown reliability ρ, and the noise-corrected
``r / sqrt(ρ)``.  The figure shows r and ρ against the budget (log scale) with the targets
ρ = 0.9 (SM^X) and 0.95 (SM^H).  :func:`budget_for` says where a map reaches its target: the first
measured budget whose mean ρ reaches it, interpolated linearly in log budget from the one before;
when no measured budget reaches it, the Spearman-Brown extrapolation from the largest budget
(``b * t (1 - ρ) / (ρ (1 - t))`` masks for target t), marked as such.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from caspes.analysis.bootstrap import disattenuated_ci
from caspes.report.figures import save_figure
from caspes.report.results import Bootstrap, r_cell, read_tsv, run_of
from caspes.report.tables import Cell, Table, to_markdown, write_table

__all__ = ["TARGETS", "budget_for", "convergence_table", "convergence_figure", "write_convergence"]

log = logging.getLogger(__name__)

#: Reliability targets of the maps (the statistics issue's goals, used by the default budget).
TARGETS = {"smx": 0.9, "smh": 0.95}

_LABELS = {"smx": "SM^X", "smh": "SM^H"}


def budget_for(budgets: Sequence[float], reliability: Sequence[float], target: float) -> tuple[float, str]:
    """(masks, how) at which the mean reliability reaches ``target`` (module docstring); ``how``
    is ``"measured"``, ``"interpolated"``, ``"extrapolated"`` or ``"unknown"`` (NaN masks: no
    usable reliability)."""
    b = np.asarray(budgets, dtype=float)
    rel = np.asarray(reliability, dtype=float)
    order = np.argsort(b)
    b, rel = b[order], rel[order]
    ok = np.isfinite(rel)
    b, rel = b[ok], rel[ok]
    if b.size == 0:
        return math.nan, "unknown"
    hits = np.nonzero(rel >= target)[0]
    if hits.size:
        k = int(hits[0])
        if k == 0:
            return float(b[0]), "measured"
        lo, hi = np.log(b[k - 1]), np.log(b[k])
        frac = (target - rel[k - 1]) / (rel[k] - rel[k - 1])
        return float(np.exp(lo + frac * (hi - lo))), "interpolated"
    last_b, last_rel = float(b[-1]), float(rel[-1])
    if last_rel <= 0:
        return math.nan, "unknown"
    return last_b * target * (1 - last_rel) / (last_rel * (1 - target)), "extrapolated"


def _summary(df: pd.DataFrame, boot: Bootstrap) -> list[dict[str, object]]:
    rows = []
    for (name, budget), g in df.groupby(["map", "budget"], sort=True):
        cell = r_cell(g["r"].to_numpy(float), boot)
        corrected = disattenuated_ci(g["r"].to_numpy(float), g["reliability"].to_numpy(float))
        rows.append({
            "map": name, "budget": int(budget), "masks": int(g["masks"].iloc[0]), "utterances": int(g["r"].notna().sum()),
            "r": cell, "split_half": float(g["split_half"].mean()), "reliability": float(g["reliability"].mean()),
            "corrected": corrected.mean,
        })  # fmt: skip
    return rows


def convergence_table(path: str | Path, boot: Bootstrap = Bootstrap()) -> Table:
    """The table of one convergence file (module docstring)."""
    df = read_tsv(path)
    run = run_of(path)
    rows = _summary(df, boot)
    table = Table(
        name="convergence",
        caption=(
            f"Convergence of SPES maps with the mask budget ({run.model} {run.direction} {run.split}, "
            f"{df['utterance'].nunique()} utterances, nested budgets of one run per map): Pearson r of the "
            "all-layer, all-head cross-attention (l-AVG) with SM^X (pooled as in the tables) and SM^H, mean over "
            "utterances"
            + (f" ± half the {boot.level:.0%} bootstrap interval" if boot.resamples else "")
            + "; split-half r of the map; ρ: its Spearman-Brown reliability; r/√ρ: the noise-corrected r. "
            "Beyond the paper."
        ),
        columns=["map", "masks", "utterances", "r", "split-half r", "ρ", "r/√ρ"],
        rows=[
            [
                _LABELS.get(str(r["map"]), str(r["map"])),
                int(r["masks"]),
                int(r["utterances"]),
                r["r"],  # type: ignore[arg-type]
                Cell(r["split_half"]),
                Cell(r["reliability"]),
                Cell(r["corrected"]),
            ]  # type: ignore[arg-type]
            for r in rows
        ],  # fmt: skip
    )
    notes = []
    for name, target in TARGETS.items():
        part = [r for r in rows if r["map"] == name]
        if not part:
            continue
        masks, how = budget_for([r["masks"] for r in part], [r["reliability"] for r in part], target)  # type: ignore[misc]
        label = _LABELS[name]
        if how == "unknown":
            notes.append(f"{label}: no defined reliability, so no budget for ρ = {target}.")
        elif how == "extrapolated":
            notes.append(
                f"{label} does not reach ρ = {target} within {max(r['masks'] for r in part)} masks "  # type: ignore[type-var]
                f"(ρ {part[-1]['reliability']:.3f}); Spearman-Brown extrapolation: about {masks:,.0f} masks."
            )
        else:
            notes.append(f"{label} reaches ρ = {target} at about {masks:,.0f} masks ({how}).")
    table.notes = notes
    return table


def convergence_figure(path: str | Path) -> Figure:
    """r and ρ of each map against the budget (log x), targets dashed."""
    df = read_tsv(path)
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    ax_r, ax_rel = fig.subplots(1, 2)
    for name, g in df.groupby("map", sort=True):
        means = g.groupby("masks")[["r", "reliability"]].mean()
        label = _LABELS.get(str(name), str(name))
        ax_r.plot(means.index, means["r"], marker="o", label=label)
        line = ax_rel.plot(means.index, means["reliability"], marker="o", label=label)[0]
        if name in TARGETS:
            ax_rel.axhline(TARGETS[str(name)], color=line.get_color(), linestyle="--", linewidth=0.8)
    for ax, ylabel in ((ax_r, "r(CA l-AVG, SM)"), (ax_rel, "reliability ρ (Spearman-Brown)")):
        ax.set_xscale("log")
        ax.set_xlabel("masks per utterance")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=8)
    run = run_of(path)
    fig.suptitle(f"Convergence with the mask budget ({run.model} {run.direction} {run.split})", fontsize=10)
    return fig


def write_convergence(path: str | Path, out_csv: str | Path, bootstrap: dict | None = None) -> Table:
    """Rule ``convergence``: the table (CSV, Markdown, LaTeX) and the figure (PNG, PDF) beside it."""
    table = convergence_table(path, Bootstrap(**(bootstrap or {})))
    prefix = Path(out_csv).with_suffix("")
    write_table(table, prefix)
    save_figure(convergence_figure(path), prefix)
    log.info("\n%s", to_markdown(table))
    return table
