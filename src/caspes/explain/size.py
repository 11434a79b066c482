"""Size of a saliency map (its compactness; ``spec/spes_reference.md`` §4 and §10).

Size
    Per utterance, the percentage of map elements (all rows) with normalised value >= tau for
    tau in 0, 0.05, .., 1; mean over utterances; AUC by the trapezoid over tau (0-100, lower =
    more compact).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from caspes.core.tsv import write_tsv
from caspes.explain.maps import normalize_per_token
from caspes.explain.stores import SaliencyStore

__all__ = ["size_curve", "size_table"]

log = logging.getLogger(__name__)


def size_curve(maps: Sequence[np.ndarray], step: float = 0.05) -> tuple[list[float], list[float], float]:
    """Size metric of per-token normalised maps (values in [0, 1]).

    Returns:
        (thresholds, mean percentage of elements >= threshold, AUC over thresholds in [0, 100]).
    """
    if not maps:
        raise ValueError("size needs at least one map")
    n = int(round(1.0 / step))
    taus = [round(k * step, 10) for k in range(n + 1)]
    per_map = []
    for m in maps:
        a = np.asarray(m, dtype=np.float64).reshape(-1)
        per_map.append([100.0 * float((a >= tau).mean()) for tau in taus])
    mean = np.mean(np.asarray(per_map), axis=0)
    area = float(np.sum((mean[1:] + mean[:-1]) * np.diff(taus)) / 2.0)
    return taus, mean.tolist(), area


def size_table(store_path: str | Path, out_path: str | Path) -> float:
    """Size curve of every map of a saliency store (each normalised per token), written as TSV
    (threshold, percent above, AUC, utterances); returns the AUC."""
    with SaliencyStore(store_path) as store:
        maps = [normalize_per_token(store[uid].saliency) for uid in store.ids]
    taus, percents, area = size_curve(maps)
    table = pd.DataFrame({"threshold": taus, "percent_above": percents})
    table["auc"] = round(area, 4)
    table["utterances"] = len(maps)
    write_tsv(out_path, table)
    log.info("size AUC = %.2f over %d utterances", area, len(maps))
    return area
