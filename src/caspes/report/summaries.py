"""The study-wide summary TSVs: every model's quality (rule ``quality_table``) and every saliency
store's explanation metrics and cost (rule ``explanation_table``), one row per run (and map)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from caspes.analysis.correlation import mean_reliability
from caspes.core.tsv import write_tsv
from caspes.report.results import read_tsv

__all__ = ["quality_table", "map_reliability", "explanation_row", "explanation_table"]

log = logging.getLogger(__name__)


def quality_table(quality_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """The per-run quality TSVs (rule ``decode``: WER / BLEU / chrF ...) stacked in the given order,
    written as TSV to ``out_path``; logs and returns the table."""
    table = pd.concat([read_tsv(p) for p in quality_files], ignore_index=True)
    write_tsv(out_path, table)
    log.info("quality:\n%s", table.to_string(index=False))
    return table


def map_reliability(correlation_path: str | Path, pooling: str) -> tuple[float, float, int]:
    """(mean split-half r, mean Spearman-Brown reliability, utterances with a known one) of the
    maps of a correlation file (rule ``correlate``), for ``pooling`` (SM^X) or as they are (SM^H,
    pooling ``none``); NaN and 0 for a file without reliability columns."""
    corr = read_tsv(correlation_path)
    if "reliability" not in corr:
        return math.nan, math.nan, 0
    pools = set(corr["pooling"].astype(str))
    split_half, reliability, known, _ = mean_reliability(corr, pooling if pooling in pools else "none")
    return split_half, reliability, known


def explanation_row(deletion_path: str | Path, pooling: str = "max2d") -> dict[str, object]:
    """One row of :func:`explanation_table` for the deletion curve
    ``<model>/<pair>/<split>/deletion/<map>.tsv``: its unit, metric and AUC, the size AUC from
    ``size/<map>.tsv``, the map's mean reliability from ``correlation/<map>.tsv``
    (:func:`map_reliability`; SM^X pooled with ``pooling``, as in the tables) and the cost from
    ``saliency/<map>.timing.tsv`` of the same run (utterances, seconds per computed utterance, the
    devices used; utterances resumed from a partial store are not counted in the cost)."""
    path = Path(deletion_path)
    split_dir, name = path.parent.parent, path.stem
    model, pair, split = split_dir.parts[-3:]
    curve = read_tsv(path)
    size = read_tsv(split_dir / "size" / f"{name}.tsv")
    split_half, reliability, known = map_reliability(split_dir / "correlation" / f"{name}.tsv", pooling)
    timing = read_tsv(split_dir / "saliency" / f"{name}.timing.tsv")
    n = int(timing["utterances"].sum())
    # Utterances taken from a partial store (resume) cost nothing in this attempt's seconds.
    computed = n - int(timing["resumed"].fillna(0).sum()) if "resumed" in timing else n
    return {
        "model": model, "direction": pair, "split": split, "map": name, "unit": curve["unit"][0],
        "metric": curve["metric"][0], "deletion_auc": curve["auc"][0], "size_auc": size["auc"][0],
        "split_half": split_half, "reliability": reliability, "reliability_utterances": known, "utterances": n, "seconds_per_utterance": round(timing["seconds"].sum() / max(computed, 1), 3),
        "device": ",".join(sorted(set(timing["device"]))),
    }  # fmt: skip


def explanation_table(
    files: Iterable[str | Path], out_path: str | Path, pooling: str = "max2d"
) -> pd.DataFrame:
    """Rule ``explanation_table``: a row (:func:`explanation_row`) per deletion curve among ``files``
    (those under a ``deletion/`` folder; the other outputs of the explain and analysis stages are
    read through them), written as TSV to ``out_path``; logs and returns the table."""
    rows = [explanation_row(p, pooling) for p in map(str, files) if "/deletion/" in p]
    table = pd.DataFrame(rows)
    write_tsv(out_path, table, na_rep="nan")
    log.info("\n%s", table.to_string(index=False))
    return table
