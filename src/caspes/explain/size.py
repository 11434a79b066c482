"""Size of a saliency map: share of the map above each threshold, and its area under the curve."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["size_curve"]


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
