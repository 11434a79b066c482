"""Token spans from a (token, frame) map: DTW (whisper's way), argmax, centroid.

A map is an ``(I, T')`` array, one row per target token and one column per encoder frame
(:data:`FRAME_SECONDS` each); :mod:`caspes.analysis.timestamps` turns the spans into word times.

Method
    *DTW* (the idea behind Whisper's cross-attention word timestamps; the code here is our own).
    Each row is min-max scaled over the frames to [0, 1] and the cost is ``1 - scaled map`` (0 at
    the row's peak, 1 at its lowest frame; a constant row costs 1 everywhere and so pulls the path
    nowhere). The classic dynamic-time-warping recursion then finds the monotonic minimum-cost
    path from (first token, first frame) to (last token, last frame) with steps (i+1, j+1),
    (i+1, j) and (i, j+1). The path visits every row and every column, so each token gets the
    contiguous run of frames it is paired with, ``[first frame, last frame + 1)``; consecutive
    tokens' runs touch (diagonal step) or share one frame (vertical step), and several tokens can
    share one frame (which is how the path copes with ``I > T'``).

    Why this normalisation: scaling each row puts rows of very different scale (a peaked row and
    a diffuse one) on the same footing, and non-negative costs make every extra cell a cost, so
    with ``I <= T'`` the path is essentially a monotonic assignment of each frame to one token
    that maximises the tokens' scaled mass, and it stacks two tokens on a frame only when the
    map asks for it. The alternative ``normalisation="zscore"`` (cost = minus the row z-scored
    over frames, as in Whisper's recipe up to its axis) is kept for comparison; its costs are
    negative above each row's mean and only about ``mean / std`` (near 0 for a peaked row) below,
    so vertical steps are almost free and token starts tend to creep one frame early.

    *Point baselines*. ``argmax``: each row's peak frame (the first one on ties). ``centroid``:
    each row's centre of mass after shifting the row so that its minimum is 0 (a constant row
    has its centre in the middle of the utterance), rounded half up to a frame. Both give a
    one-frame span ``[f, f + 1)`` per token and say nothing about durations, so
    :func:`word_times` (with ``monotonic=True``) lets each word run up to the next word's start.

Why our own DTW rather than a package (dtw-python, tslearn, librosa's ``sequence.dtw``): the maps
are small (tens of tokens by a few hundred frames), so a numpy recursion costs milliseconds; and
what decides the spans is fixed and tested here: the step set, the start and end cells, float64
accumulation and the tie-breaking order of :func:`dtw_path`, which those packages choose
differently or leave unspecified.
"""

from __future__ import annotations

import math

import numpy as np

from caspes.explain.maps import minmax, zscore

FRAME_SECONDS = 0.04
"""Seconds per encoder frame: 10 ms filterbank shift times a convolutional subsampling of 4."""


METHODS = ("dtw", "argmax", "centroid")
"""Methods understood by :func:`token_spans` and :func:`estimate_word_times`."""


# DTW back-pointer codes (also the tie-breaking order: the lowest code wins a tie).
_DIAG, _VERT, _HORIZ = 0, 1, 2


Span = tuple[int, int]


def check_map(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as float64, or ValueError when it is not a non-empty, finite 2-D array."""
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {out.shape}")
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be finite (it holds NaN or inf)")
    return out


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic minimum-cost alignment of rows (tokens) to columns (frames).

    The classic DTW recursion in float64: ``D[0, 0] = C[0, 0]`` and
    ``D[i, j] = C[i, j] + min(D[i-1, j-1], D[i-1, j], D[i, j-1])`` (terms outside the matrix left
    out); the path runs from ``(0, 0)`` to ``(I-1, T'-1)`` with steps ``(i+1, j+1)``, ``(i+1, j)``
    and ``(i, j+1)``, and its cost is the sum of ``C`` over the cells it visits. Costs may be
    negative.

    Tie-breaking (deterministic): where predecessors have equal accumulated cost, the diagonal
    predecessor ``(i-1, j-1)`` is preferred, then the vertical ``(i-1, j)``, then the horizontal
    ``(i, j-1)``. On an all-equal square matrix the path is therefore the main diagonal.

    Returns ``(rows, cols)``: int64 arrays of the path's cells in order, both of length between
    ``max(I, T')`` and ``I + T' - 1``. ValueError on empty, non-2-D or non-finite input.
    """
    c = check_map(cost, "cost")
    n_rows, n_cols = c.shape
    acc = np.empty((n_rows, n_cols), dtype=np.float64)
    back = np.empty((n_rows, n_cols), dtype=np.int8)

    # First row: only horizontal steps (summed in order, as the recursion does).
    total = 0.0
    for j in range(n_cols):
        total += float(c[0, j])
        acc[0, j] = total
        back[0, j] = _HORIZ
    back[0, 0] = -1

    for i in range(1, n_rows):
        prev = acc[i - 1]
        # Best of the diagonal (i-1, j-1) and vertical (i-1, j) predecessors, ties to the diagonal.
        diag = prev[:-1]
        vert = prev[1:]
        take_diag = diag <= vert
        from_above = np.concatenate(([prev[0]], np.where(take_diag, diag, vert))).tolist()
        move_above = np.concatenate(([_VERT], np.where(take_diag, _DIAG, _VERT))).tolist()
        row_cost = c[i].tolist()
        row_acc = [0.0] * n_cols
        row_back = [0] * n_cols
        left = math.inf
        for j in range(n_cols):
            best, move = from_above[j], move_above[j]
            if left < best:  # strictly better: ties stay with the diagonal / vertical step
                best, move = left, _HORIZ
            left = row_cost[j] + best
            row_acc[j] = left
            row_back[j] = move
        acc[i] = row_acc
        back[i] = row_back

    rows: list[int] = []
    cols: list[int] = []
    i, j = n_rows - 1, n_cols - 1
    while True:
        rows.append(i)
        cols.append(j)
        if i == 0 and j == 0:
            break
        move = back[i, j]
        if move == _DIAG:
            i, j = i - 1, j - 1
        elif move == _VERT:
            i -= 1
        else:
            j -= 1
    return np.asarray(rows[::-1], dtype=np.int64), np.asarray(cols[::-1], dtype=np.int64)


NORMALISATIONS = ("minmax", "zscore")
"""Row normalisations understood by :func:`dtw_cost`."""


def dtw_cost(saliency: np.ndarray, normalisation: str = "minmax") -> np.ndarray:
    """The DTW cost of a map: 1 minus the map min-max scaled per row (``minmax``), or minus the map
    z-scored per row over its frames (``zscore``, population std); constant rows count as 0."""
    m = check_map(saliency, "saliency")
    if normalisation == "minmax":
        return 1.0 - minmax(m, axis=1)
    if normalisation == "zscore":
        return -zscore(m, axis=1)
    raise ValueError(f"unknown normalisation {normalisation!r}; expected one of {NORMALISATIONS}")


def token_spans_dtw(saliency: np.ndarray, normalisation: str = "minmax") -> list[Span]:
    """Per row, ``[first frame, last frame + 1)`` of that row's cells on the DTW path.

    The cost is :func:`dtw_cost` (by default ``1 - `` the row min-max scaled to [0, 1]), so the
    path follows each row's strongest frames. Every row gets a non-empty span; consecutive spans
    touch (diagonal step) or share one frame (vertical step), so with ``I > T'`` several tokens
    sit on one frame.
    """
    rows, cols = dtw_path(dtw_cost(saliency, normalisation))
    n_rows = int(rows[-1]) + 1
    first = np.full(n_rows, -1, dtype=np.int64)
    last = np.full(n_rows, -1, dtype=np.int64)
    for i, j in zip(rows.tolist(), cols.tolist()):
        if first[i] < 0:
            first[i] = j
        last[i] = j
    return [(int(a), int(b) + 1) for a, b in zip(first, last)]


def token_spans_argmax(saliency: np.ndarray) -> list[Span]:
    """Baseline: each row's peak frame ``f`` (the first one on ties), as the span ``[f, f + 1)``."""
    peaks = np.argmax(check_map(saliency, "saliency"), axis=1)
    return [(int(f), int(f) + 1) for f in peaks]


def token_spans_centroid(saliency: np.ndarray) -> list[Span]:
    """Baseline: each row's centre of mass ``c``, as the span ``[f, f + 1)`` with ``f = floor(c + 0.5)``.

    The mass is the row minus its minimum (non-negative, 0 at the row's lowest frame); a
    constant row (no mass) has its centre at the middle frame ``(T' - 1) / 2``.
    """
    m = check_map(saliency, "saliency")
    n_cols = m.shape[1]
    mass = m - m.min(axis=1, keepdims=True)
    total = mass.sum(axis=1)
    frames = np.arange(n_cols, dtype=np.float64)
    centre = np.full(m.shape[0], (n_cols - 1) / 2.0)
    has_mass = total > 0
    centre[has_mass] = (mass[has_mass] @ frames) / total[has_mass]
    f = np.clip(np.floor(centre + 0.5).astype(np.int64), 0, n_cols - 1)
    return [(int(x), int(x) + 1) for x in f]


def token_spans(saliency: np.ndarray, method: str, normalisation: str = "minmax") -> list[Span]:
    """Dispatch to :func:`token_spans_dtw`, :func:`token_spans_argmax` or :func:`token_spans_centroid`.

    ``normalisation`` is used by ``dtw`` only.
    """
    if method == "dtw":
        return token_spans_dtw(saliency, normalisation)
    if method == "argmax":
        return token_spans_argmax(saliency)
    if method == "centroid":
        return token_spans_centroid(saliency)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
