"""Word timestamps from explanation maps (cross-attention or saliency), and their evaluation.

An explanation map here is an ``(I, T')`` array: one row per target token (a SentencePiece
piece; the first piece of a word starts with ``"▁"``, U+2581) and one column per encoder frame
(:data:`FRAME_SECONDS` = 40 ms: a 10 ms filterbank shift times a subsampling of 4). If a map
really tells *where in the audio* each token comes from, reading a time off each row should
give back the words' times. This module turns a map into word times and scores them against
the ground-truth word times of the synthetic corpus.

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

Words
    :func:`group_words` groups piece rows into words (a ``"▁"`` piece opens a word). A word's time
    is ``[start of its first piece's span, end of its last piece's span)`` in seconds, see
    :func:`word_times` for the exact monotonic post-processing.

Evaluation
    The hypothesis words are aligned to the reference transcript by Levenshtein distance
    (:func:`align_words`); only words that are equal in both are scored. :func:`timestamp_errors`
    gives the mean absolute start and end errors (ms) and the share of boundaries within given
    tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FRAME_SECONDS = 0.04
"""Seconds per encoder frame: 10 ms filterbank shift times a convolutional subsampling of 4."""

WORD_START = "\u2581"
"""SentencePiece's word-start marker ``"▁"``."""

METHODS = ("dtw", "argmax", "centroid")
"""Methods understood by :func:`token_spans` and :func:`estimate_word_times`."""

# DTW back-pointer codes (also the tie-breaking order: the lowest code wins a tie).
_DIAG, _VERT, _HORIZ = 0, 1, 2

# Slack added to the tolerances of :func:`timestamp_errors`, so that an error of exactly the
# tolerance (e.g. 0.35 - 0.30 s, which is 0.04999... in floating point) counts as within it.
_TOLERANCE_SLACK = 1e-9

Span = tuple[int, int]


# --------------------------------------------------------------------------- words


def group_words(pieces: Sequence[str]) -> list[list[int]]:
    """Row indices of each word.

    A piece starting with ``"▁"`` opens a new word; any other piece joins the current word. A
    leading piece without ``"▁"`` opens the first word. A bare ``"▁"`` piece opens a word like any
    other ``"▁"`` piece, and the pieces without ``"▁"`` after it join it (SentencePiece writes e.g.
    ``"▁", "5"`` for a word starting with a character that it does not merge with the marker).
    Empty list for no pieces.

    >>> group_words(["▁the", "▁cat", "s", "▁sat"])
    [[0], [1, 2], [3]]
    """
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or not groups:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def words_text(pieces: Sequence[str], groups: Sequence[Sequence[int]]) -> list[str]:
    """The word strings: each group's pieces joined, with every ``"▁"`` removed."""
    return ["".join(pieces[i] for i in group).replace(WORD_START, "") for group in groups]


# --------------------------------------------------------------------------- DTW


def _check_map(array: np.ndarray, name: str) -> np.ndarray:
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
    c = _check_map(cost, "cost")
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


def normalise_rows(saliency: np.ndarray) -> np.ndarray:
    """Z-score each row over its frames (mean 0, std 1); a constant row becomes all zeros."""
    m = _check_map(saliency, "saliency")
    centred = m - m.mean(axis=1, keepdims=True)
    std = centred.std(axis=1, keepdims=True)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def scale_rows(saliency: np.ndarray) -> np.ndarray:
    """Min-max scale each row over its frames to [0, 1]; a constant row becomes all zeros."""
    m = _check_map(saliency, "saliency")
    shifted = m - m.min(axis=1, keepdims=True)
    span = shifted.max(axis=1, keepdims=True)
    return np.divide(shifted, span, out=np.zeros_like(shifted), where=span > 0)


def dtw_cost(saliency: np.ndarray, normalisation: str = "minmax") -> np.ndarray:
    """The DTW cost of a map: ``1 - scale_rows(map)`` (``minmax``) or ``-normalise_rows(map)`` (``zscore``)."""
    if normalisation == "minmax":
        return 1.0 - scale_rows(saliency)
    if normalisation == "zscore":
        return -normalise_rows(saliency)
    raise ValueError(f"unknown normalisation {normalisation!r}; expected one of {NORMALISATIONS}")


# --------------------------------------------------------------------------- token spans


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
    peaks = np.argmax(_check_map(saliency, "saliency"), axis=1)
    return [(int(f), int(f) + 1) for f in peaks]


def token_spans_centroid(saliency: np.ndarray) -> list[Span]:
    """Baseline: each row's centre of mass ``c``, as the span ``[f, f + 1)`` with ``f = floor(c + 0.5)``.

    The mass is the row minus its minimum (non-negative, 0 at the row's lowest frame); a
    constant row (no mass) has its centre at the middle frame ``(T' - 1) / 2``.
    """
    m = _check_map(saliency, "saliency")
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


# --------------------------------------------------------------------------- word times


def word_times(
    spans: Sequence[Span],
    groups: Sequence[Sequence[int]],
    frame_seconds: float = FRAME_SECONDS,
    monotonic: bool = True,
) -> list[tuple[float, float]]:
    """Word ``(start, end)`` times in seconds from token spans (frames ``[a, b)``).

    With ``monotonic=False`` a word's start is its first piece's span start ``a`` and its end its
    last piece's span end ``b``, as they are (for a point baseline, the last piece's frame + 1).

    With ``monotonic=True`` (in frames, words ``k = 0 .. K-1``)::

        start[k] = max(a[first piece of k], start[k-1])             # starts never go back
        end[k]   = max(b[last piece of k], start[k+1], start[k] + 1)  # start[k+1] left out for k = K-1

    so words tile the time axis without gaps, each at least one frame long. For the point
    baselines whose frames increase from word to word (each word's last piece before the next
    word's first piece), this is: a word starts at its first piece's frame and ends at the next
    word's start, the last word at its last piece's frame + 1. For DTW spans it changes nothing
    (the path never goes back, and a row's span ends at or after the next row's span start), so
    ``monotonic`` only matters for the point baselines. Where a point baseline goes back in time,
    starts are clamped and a word may overlap the next one.

    ValueError when a group is empty or names a missing span, or a span is empty.
    """
    for a, b in spans:
        if not b > a:
            raise ValueError(f"empty span [{a}, {b})")
    for group in groups:
        if not group:
            raise ValueError("empty word group")
        for i in group:
            if not 0 <= i < len(spans):
                raise ValueError(f"group index {i} out of range for {len(spans)} spans")
    starts = [spans[g[0]][0] for g in groups]
    ends = [spans[g[-1]][1] for g in groups]
    if monotonic:
        for k in range(1, len(starts)):
            starts[k] = max(starts[k], starts[k - 1])
        for k in range(len(ends)):
            following = starts[k + 1] if k + 1 < len(starts) else starts[k]
            ends[k] = max(ends[k], following, starts[k] + 1)
    return [(a * frame_seconds, b * frame_seconds) for a, b in zip(starts, ends)]


def estimate_word_times(
    saliency: np.ndarray,
    pieces: Sequence[str],
    method: str,
    frame_seconds: float = FRAME_SECONDS,
    monotonic: bool = True,
    normalisation: str = "minmax",
) -> list[tuple[float, float]]:
    """Word times (seconds) of ``pieces`` read off ``saliency`` with ``method`` (``dtw``, ``argmax``, ``centroid``).

    ``saliency`` has exactly one row per piece (the caller keeps only content-token rows, e.g.
    no end-of-sentence or language tag). The words are those of :func:`group_words` (their text:
    :func:`words_text`). ``normalisation`` is that of :func:`dtw_cost` (``dtw`` only).
    """
    m = _check_map(saliency, "saliency")
    if m.shape[0] != len(pieces):
        raise ValueError(f"saliency has {m.shape[0]} rows for {len(pieces)} pieces")
    spans = token_spans(m, method, normalisation)
    return word_times(spans, group_words(pieces), frame_seconds=frame_seconds, monotonic=monotonic)


# --------------------------------------------------------------------------- evaluation


def align_words(hyp: Sequence[str], ref: Sequence[str]) -> list[tuple[int, int]]:
    """Levenshtein alignment of hypothesis words to reference words; the equal pairs.

    Unit costs for substitution, insertion and deletion, 0 for a match. Among the minimum-cost
    alignments, the back-trace (from the end) prefers a match/substitution, then a deletion of a
    reference word, then an insertion of a hypothesis word. Returns the ``(hyp index, ref
    index)`` pairs aligned as matches (equal words), in increasing order.
    """
    n, m = len(hyp), len(ref)
    dist = np.zeros((n + 1, m + 1), dtype=np.int64)
    dist[:, 0] = np.arange(n + 1)
    dist[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = dist[i - 1, j - 1] + (0 if hyp[i - 1] == ref[j - 1] else 1)
            dist[i, j] = min(diag, dist[i - 1, j] + 1, dist[i, j - 1] + 1)
    pairs: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 and j > 0:
        same = hyp[i - 1] == ref[j - 1]
        if dist[i, j] == dist[i - 1, j - 1] + (0 if same else 1):
            if same:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif dist[i, j] == dist[i, j - 1] + 1:  # reference word missing from the hypothesis
            j -= 1
        else:  # hypothesis word not in the reference
            i -= 1
    return pairs[::-1]


def tolerance_key(tolerance: float) -> str:
    """Key of a tolerance in :func:`timestamp_errors`' result, e.g. ``within_50ms`` for 0.05 s."""
    return f"within_{round(tolerance * 1000):d}ms"


def timestamp_errors(
    pred: Sequence[tuple[float, float]],
    ref: Sequence[tuple[float, float]],
    tolerances: Sequence[float] = (0.05, 0.1, 0.2),
) -> dict[str, float]:
    """Errors of predicted word times against reference times, word by word (seconds in).

    ``pred[k]`` and ``ref[k]`` are the times of the same (matched) word; ValueError when the
    lists differ in length. Returns:

    ``words``
        number of word pairs;
    ``start_mae_ms``, ``end_mae_ms``
        mean absolute start / end error in milliseconds;
    ``boundary_mae_ms``
        mean absolute error over starts and ends pooled;
    ``within_<t>ms`` (see :func:`tolerance_key`)
        for each tolerance ``t`` (seconds), the share (0-1) of boundaries, starts and ends pooled,
        with absolute error at most ``t`` (plus 1e-9 s of slack for floating-point rounding).

    With no pairs, ``words`` is 0 and every other value NaN.
    """
    if len(pred) != len(ref):
        raise ValueError(f"{len(pred)} predicted word times for {len(ref)} reference ones")
    out: dict[str, float] = {"words": len(pred)}
    keys = ["start_mae_ms", "end_mae_ms", "boundary_mae_ms"] + [tolerance_key(t) for t in tolerances]
    if not pred:
        out.update({key: math.nan for key in keys})
        return out
    p = np.asarray(pred, dtype=np.float64).reshape(-1, 2)
    r = np.asarray(ref, dtype=np.float64).reshape(-1, 2)
    err = np.abs(p - r)
    out["start_mae_ms"] = float(err[:, 0].mean() * 1000.0)
    out["end_mae_ms"] = float(err[:, 1].mean() * 1000.0)
    out["boundary_mae_ms"] = float(err.mean() * 1000.0)
    for t in tolerances:
        out[tolerance_key(t)] = float(np.mean(err <= t + _TOLERANCE_SLACK))
    return out
