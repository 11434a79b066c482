"""Turning saliency and attention into comparable maps: per-token normalisation, pooling to the
encoder's frame rate, averages over (layer, head) sets."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

__all__ = [
    "zscore",
    "minmax",
    "normalize_per_token",
    "POOLINGS",
    "NORMALISATIONS",
    "Selection",
    "content_rows",
    "mean_attention",
    "normalise",
    "pool_saliency",
]


def zscore(x: np.ndarray, axis: int, ddof: int = 0) -> np.ndarray:
    """``x`` (float64) z-scored along ``axis``, std with ``ddof``; 0 where the std is 0 or the result
    is not finite (a constant row or column becomes all zeros)."""
    mean = x.mean(axis=axis, keepdims=True)
    std = x.std(axis=axis, ddof=ddof, keepdims=True) if x.shape[axis] > ddof else np.zeros_like(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - mean) / std
    z[~np.isfinite(z)] = 0.0
    return z


def minmax(x: np.ndarray, axis: int) -> np.ndarray:
    """``x`` (float64) min-max scaled to [0, 1] along ``axis``; a constant row or column becomes 0."""
    shifted = x - x.min(axis=axis, keepdims=True)
    span = shifted.max(axis=axis, keepdims=True)
    return np.divide(shifted, span, out=np.zeros_like(shifted), where=span > 0)


def normalize_per_token(saliency: np.ndarray | Tensor) -> np.ndarray:
    """The reference's token-level normalisation (``single_mean_std`` then ``paired_min_max``).

    Each token row ``i`` (all elements after the first axis) is z-scored (std with n-1; NaN/inf ->
    0) and then min-max scaled to [0, 1]; a constant row becomes all zeros.  Net effect: per-row
    min-max scaling.  Works on (I, T, F) and (I, T') maps; returns float32.
    """
    x = saliency.detach().cpu().numpy() if isinstance(saliency, Tensor) else np.asarray(saliency)
    x = x.astype(np.float64)
    if x.ndim < 2:
        raise ValueError(f"saliency must have a token axis and at least one more, got shape {x.shape}")
    flat = x.reshape(x.shape[0], -1)
    return minmax(zscore(flat, axis=1, ddof=1), axis=1).reshape(x.shape).astype(np.float32)


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
    (:func:`normalize_per_token`); ``"none"``: unchanged (float64).
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (I, T') map, got shape {x.shape}")
    if axis == "none":
        return x.copy()
    if axis == "token":
        return normalize_per_token(x).astype(np.float64)
    if axis == "frame":
        return zscore(x, axis=0)
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {axis!r}")


def pool_saliency(saliency: np.ndarray, method: str = "max2d", factor: int = 4) -> np.ndarray:
    """SM^X (I, T, F) -> (I, ceil(T / factor)) on the encoder grid.

    Encoder step ``j`` covers input frames ``[j * factor, (j + 1) * factor)`` (the last window
    truncated to ``T``), ``factor`` being the model's subsampling (ours 4, Whisper 2). This is the
    grid of the model's own convolutions: they give ``ceil(T / factor)`` steps, step ``j`` centred on
    input frame ``j * factor`` (its receptive field is wider: frames ``4j - 6 .. 4j + 6`` for ours,
    ``2j - 2 .. 2j + 2`` for Whisper), so each window starts at its step's centre. Deletion's
    upsampling (:func:`caspes.explain.deletion.upsample_frames`) and the timestamps' frame times
    (:mod:`caspes.analysis.timestamps`) use the same windows.

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
