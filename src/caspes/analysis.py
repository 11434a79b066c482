"""Cross-attention against saliency: normalisations, pooling of SM^X to the encoder grid, and the
per-utterance Pearson correlations behind Tables 1-4 and 6 (paper §3.3, §5; spec §5 and §10).

For one utterance with cross-attention ``A`` (L, H, I, T') and a saliency map ``S`` (I, T') (SM^H,
or SM^X pooled from (I, T, F) by :func:`pool_saliency`):

1. rows: only the rows that predict content tokens are kept (role ``token``): the language-tag row
   and the EOS row are removed from both maps (the decoder's BOS is an input, never a row);
2. CA of a set S of (layer, head) pairs: the mean of ``A[l, h]`` over S (a single head, one layer's
   heads "h-AVG", one head over the layers "l-AVG", or every pair);
3. normalisation: CA frame-wise (each encoder frame's column z-scored across the kept tokens,
   population std; a constant column becomes 0), the saliency per token (each row z-scored then
   min-max scaled to [0, 1], the reference's token-level scheme); both axes are switchable;
4. Pearson r (``scipy.stats.pearsonr``) of the two flattened (I, T') matrices.  It is undefined when
   either map is constant (or has fewer than 2 elements): such utterances are counted and reported,
   never averaged in.

The corpus figure is the arithmetic mean of r over utterances.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "NORMALISATIONS",
    "POOLINGS",
    "Selection",
    "content_rows",
    "correlate_stores",
    "correlate",
    "mean_attention",
    "normalise",
    "pearson",
    "pool_saliency",
    "selections",
    "summarise",
]

POOLINGS = ("max2d", "avg2d", "max1d_avg1d")
NORMALISATIONS = ("frame", "token", "none")


@dataclass(frozen=True)
class Selection:
    """A set of (layer, head) pairs, named as in the paper's tables.

    ``layer`` / ``head``: 1-based index, or ``"avg"`` for the mean over all layers / heads.
    """

    layer: int | str
    head: int | str

    def pairs(self, n_layers: int, n_heads: int) -> list[tuple[int, int]]:
        layers = range(n_layers) if self.layer == "avg" else [int(self.layer) - 1]
        heads = range(n_heads) if self.head == "avg" else [int(self.head) - 1]
        return [(layer, head) for layer in layers for head in heads]


def selections(n_layers: int, n_heads: int) -> list[Selection]:
    """Every single head, every layer's head average, every head's layer average, and all."""
    out = [Selection(layer, head) for layer in range(1, n_layers + 1) for head in range(1, n_heads + 1)]
    out += [Selection(layer, "avg") for layer in range(1, n_layers + 1)]
    out += [Selection("avg", head) for head in range(1, n_heads + 1)]
    return out + [Selection("avg", "avg")]


def content_rows(roles: Sequence[str]) -> np.ndarray:
    """bool (I,): the rows that predict content tokens (role ``token``)."""
    return np.array([r == "token" for r in roles], dtype=bool)


def mean_attention(attention: np.ndarray, pairs: Iterable[tuple[int, int]]) -> np.ndarray:
    """Mean of ``attention[l, h]`` (an (L, H, I, T') array) over 0-based (layer, head) pairs."""
    att = np.asarray(attention, dtype=np.float64)
    if att.ndim != 4:
        raise ValueError(f"attention must be (L, H, I, T'), got shape {att.shape}")
    idx = list(pairs)
    if not idx:
        raise ValueError("no (layer, head) pair selected")
    return np.mean([att[layer, head] for layer, head in idx], axis=0)


def normalise(matrix: np.ndarray, axis: str) -> np.ndarray:
    """Normalise an (I, T') map.

    ``"frame"``: each column (encoder frame) z-scored across rows, population std, constant -> 0;
    ``"token"``: each row z-scored (n-1) then min-max scaled to [0, 1], constant -> 0
    (:func:`caspes.spes.normalize_per_token`); ``"none"``: unchanged (float64).
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (I, T') map, got shape {x.shape}")
    if axis == "none":
        return x.copy()
    if axis == "token":
        from .spes import normalize_per_token

        return normalize_per_token(x).astype(np.float64)
    if axis == "frame":
        mean = x.mean(axis=0, keepdims=True)
        std = x.std(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(std > 0, (x - mean) / np.where(std > 0, std, 1.0), 0.0)
        return z
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {axis!r}")


def pool_saliency(saliency: np.ndarray, method: str = "max2d", factor: int = 4) -> np.ndarray:
    """SM^X (I, T, F) -> (I, ceil(T / factor)) on the encoder grid.

    ``max2d``: maximum over each window of ``factor`` frames x all bins (the last window may be
    shorter: ceil mode); ``avg2d``: mean over the window's cells; ``max1d_avg1d``: maximum over the
    bins of each frame, then the mean over the window's frames.
    """
    x = np.asarray(saliency, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"SM^X must be (I, T, F), got shape {x.shape}")
    if method not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {method!r}")
    n_rows, t, _ = x.shape
    windows = math.ceil(t / factor)
    pad = windows * factor - t
    if method == "max2d":
        per_frame = x.max(axis=2)
        padded = np.pad(per_frame, ((0, 0), (0, pad)), constant_values=-np.inf)
        return padded.reshape(n_rows, windows, factor).max(axis=2)
    per_frame = x.max(axis=2) if method == "max1d_avg1d" else x.mean(axis=2)
    padded = np.pad(per_frame, ((0, 0), (0, pad)))
    counts = np.full(windows, factor, dtype=np.float64)
    counts[-1] = factor - pad
    return padded.reshape(n_rows, windows, factor).sum(axis=2) / counts


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two equally shaped maps (flattened); NaN when undefined (a constant input)."""
    from scipy.stats import pearsonr

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {np.shape(a)} vs {np.shape(b)}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pearsonr(x, y).statistic)


def correlate(
    attention: np.ndarray,
    saliency: np.ndarray,
    roles: Sequence[str],
    chosen: Sequence[Selection] | None = None,
    ca_norm: str = "frame",
    sm_norm: str = "token",
) -> list[dict[str, object]]:
    """Pearson r between CA and a saliency map (I, T') of one utterance for every selection.

    Args:
        attention: (L, H, I, T') cross-attention (:mod:`caspes.xattn`).
        saliency: (I, T') SM^H or pooled SM^X of the same rows.
        roles: row roles (``lang`` / ``token`` / ``eos``); only ``token`` rows are compared.
        chosen: selections (default: :func:`selections` of the attention's L and H).
        ca_norm, sm_norm: normalisation axes (:func:`normalise`).

    Returns:
        One dict per selection: ``layer``, ``head``, ``r`` (NaN when undefined).
    """
    att = np.asarray(attention, dtype=np.float64)
    sal = np.asarray(saliency, dtype=np.float64)
    if att.ndim != 4 or sal.ndim != 2 or att.shape[2:] != sal.shape:
        raise ValueError(f"attention (L, H, I, T') {att.shape} and saliency (I, T') {sal.shape} do not match")
    keep = content_rows(roles)
    if keep.shape != (sal.shape[0],):
        raise ValueError(f"{len(roles)} roles for {sal.shape[0]} rows")
    n_layers, n_heads = att.shape[:2]
    sm = normalise(sal[keep], sm_norm) if keep.any() else sal[keep]
    out: list[dict[str, object]] = []
    for sel in chosen if chosen is not None else selections(n_layers, n_heads):
        if not keep.any():
            out.append({"layer": sel.layer, "head": sel.head, "r": math.nan})
            continue
        ca = normalise(mean_attention(att, sel.pairs(n_layers, n_heads))[keep], ca_norm)
        out.append({"layer": sel.layer, "head": sel.head, "r": pearson(ca, sm)})
    return out


def summarise(records: Iterable[dict[str, object]], by: Sequence[str]) -> list[dict[str, object]]:
    """Mean r per group: rows with the ``by`` keys, ``r`` (mean over utterances with a defined r),
    ``utterances`` (defined) and ``undefined`` (counted, left out of the mean).  Groups keep the
    order of their first appearance."""
    groups: dict[tuple, list[float]] = {}
    for rec in records:
        groups.setdefault(tuple(rec[k] for k in by), []).append(float(rec["r"]))  # type: ignore[arg-type]
    out = []
    for key, values in groups.items():
        v = np.asarray(values)
        ok = v[np.isfinite(v)]
        out.append({
            **dict(zip(by, key)),
            "r": float(ok.mean()) if ok.size else math.nan,
            "utterances": int(ok.size),
            "undefined": int(v.size - ok.size),
        })  # fmt: skip
    return out


def correlate_stores(
    xattn_path: str | Path,
    saliency_path: str | Path,
    ca_norm: str = "frame",
    sm_norm: str = "token",
) -> list[dict[str, object]]:
    """Correlate every utterance of a saliency store with its cross-attention.

    SM^X maps are pooled to T' with each of :data:`POOLINGS`; SM^H maps are used as they are
    (pooling ``"none"``).  The rows of both stores must be the same (they come from the same
    hypotheses); a mismatch is an error naming the utterance.

    Returns:
        Records ``utterance``, ``pooling``, ``layer``, ``head``, ``r`` (NaN when undefined).
    """
    from .io import DataError
    from .saliency import SaliencyStore
    from .xattn import CrossAttentionStore

    records: list[dict[str, object]] = []
    with CrossAttentionStore(xattn_path) as xattn, SaliencyStore(saliency_path) as store:
        for uid in store.ids:
            if uid not in xattn:
                raise DataError(f"{saliency_path}: utterance '{uid}' is not in {xattn_path}")
            sal, ca = store[uid], xattn[uid]
            if sal.target_ids != ca.target_ids:
                raise DataError(f"{uid}: the saliency and cross-attention rows differ ({saliency_path}, {xattn_path})")
            if sal.kind == "input":
                maps = {p: pool_saliency(sal.saliency, p) for p in POOLINGS}
            else:
                maps = {"none": sal.saliency}
            for pooling, m in maps.items():
                if m.shape[1] != ca.encoder_length:
                    raise DataError(f"{uid}: map has {m.shape[1]} frames, cross-attention T'={ca.encoder_length}")
                for rec in correlate(ca.attention, m, ca.roles, ca_norm=ca_norm, sm_norm=sm_norm):
                    records.append({"utterance": uid, "pooling": pooling, **rec})
    return records
