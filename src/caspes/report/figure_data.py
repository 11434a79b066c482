"""What the figures show, read from the stores and result files: the normalised maps of one
utterance (:func:`figure_maps`) and the word-timestamp bars (:func:`timestamp_bars`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.maps import (
    Selection,
    content_rows,
    mean_attention,
    normalise,
    normalize_per_token,
    pool_saliency,
)
from caspes.explain.stores import SaliencyStore
from caspes.report.results import Bootstrap, map_sort_key, r_cell, read_tsv, run_of

__all__ = ["figure_maps", "timestamp_bars"]


# --------------------------------------------------------------------------- figures
def figure_maps(
    xattn_path: str | Path,
    smh_path: str | Path,
    index: int,
    smx_path: str | Path | None = None,
    pooling: str = "max2d",
    ca_norm: str = "frame",
    sm_norm: str = "token",
    factor: int = 4,
) -> dict:
    """The maps one figure shows for the ``index``-th explained utterance, content rows only, each
    normalised as it is correlated: CA (all layers and heads), SM^H, and SM^X (full, and pooled
    to the encoder grid of the model's subsampling ``factor``)."""

    with SaliencyStore(smh_path) as smh_store, CrossAttentionStore(xattn_path) as xattn:
        if not 0 <= index < len(smh_store):
            raise ValueError(
                f"analysis.figure_utterance {index} is out of range: {smh_path} has {len(smh_store)}"
            )
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
        out["smx_pooled"] = normalise(pool_saliency(smx, pooling, factor), sm_norm)
    return out


# --------------------------------------------------------------------------- word timestamps
def timestamp_bars(files: Sequence[str | Path], bootstrap: Mapping[str, object]) -> dict:
    """Figure data: per model and language, the mean DTW word-start error of each map with its
    bootstrap interval (``groups[label][map] = (mean, low, high)``)."""
    boot = Bootstrap(**bootstrap)  # type: ignore[arg-type]
    groups: dict[str, dict[str, tuple[float, float, float]]] = {}
    for path in files:
        run = run_of(path)
        df = read_tsv(path)
        df = df[df["method"] == "dtw"]
        bars = {}
        for name in sorted(df["map"].unique(), key=map_sort_key):
            cell = r_cell(df[df["map"] == name]["start_ms"].to_numpy(float), boot)
            low, high = cell.ci if cell.ci else (math.nan, math.nan)
            bars[name] = (float(cell.value), low, high)
        groups[f"{run.model} {run.src}"] = bars
    return groups
