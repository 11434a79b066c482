"""Reading the study's result files: which run a path belongs to (:func:`run_of`), TSVs and
correlation files, the order of the maps in a timestamps file; and the mean-r table cell of a set
of per-utterance values with its optional bootstrap interval (:class:`Bootstrap`, :func:`r_cell`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from caspes.analysis.bootstrap import bootstrap_ci, disattenuated_ci
from caspes.report.tables import Cell

__all__ = [
    "Run",
    "run_of",
    "read_tsv",
    "Bootstrap",
    "r_cell",
    "corr_cell",
    "read_correlations",
    "map_sort_key",
]


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


def read_tsv(path: str | Path) -> pd.DataFrame:
    """A result TSV (header row, tab-separated)."""
    return pd.read_csv(path, sep="\t", keep_default_na=True)


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

    ci = bootstrap_ci(finite, n_resamples=boot.resamples, seed=boot.seed, level=boot.level)
    return Cell(ci.mean, ci=(ci.low, ci.high))


def corr_cell(group: pd.DataFrame | None, boot: Bootstrap = Bootstrap()) -> Cell:
    """:func:`r_cell` of one selection's per-utterance rows of a correlation file, with the
    CSV-only figures (``Cell.extra``): ``corrected``, the noise-corrected ``mean r / sqrt(mean
    reliability)`` (:func:`~caspes.analysis.bootstrap.disattenuated_ci`; with ``corrected_lo`` /
    ``corrected_hi`` when intervals are asked for), the mean ``reliability`` of the map, and the
    mean ``spearman`` and ``kendall`` correlations (each over its defined values; columns a file
    lacks are left out)."""
    if group is None:
        return Cell(None)
    cell = r_cell(group["r"].to_numpy(dtype=float), boot)
    if "reliability" in group:
        rel = group["reliability"].to_numpy(dtype=float)
        ci = disattenuated_ci(group["r"].to_numpy(dtype=float), rel, boot.resamples, boot.seed, boot.level)
        cell.extra["corrected"] = ci.mean
        if boot.resamples:
            cell.extra["corrected_lo"], cell.extra["corrected_hi"] = ci.low, ci.high
        cell.extra["reliability"] = float(np.nanmean(rel)) if np.isfinite(rel).any() else math.nan
    for col in ("spearman", "kendall"):
        if col in group:
            v = group[col].to_numpy(dtype=float)
            cell.extra[col] = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
    return cell


def read_correlations(path: str | Path) -> pd.DataFrame:
    """A correlation file (rule ``correlate``), its layer, head and pooling columns as strings."""
    return pd.read_csv(path, sep="\t", dtype={"layer": str, "head": str, "pooling": str})


def map_sort_key(name: str) -> tuple[int, int]:
    """Order of the maps of a timestamps file: ``CA l1``, ``CA l2``, ..., then ``CA all``, ``SM^X``,
    ``SM^H``, then any other."""
    if name.startswith("CA l"):
        return (0, int(name[4:]))
    return (1, ("CA all", "SM^X", "SM^H").index(name) if name in ("CA all", "SM^X", "SM^H") else 9)
