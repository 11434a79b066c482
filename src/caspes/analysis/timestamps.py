"""Word timestamps from explanation maps (cross-attention or saliency), and their evaluation.

An explanation map here is an ``(I, T')`` array: one row per target token (a SentencePiece
piece; the first piece of a word starts with ``"▁"``, U+2581) and one column per encoder frame
(:data:`FRAME_SECONDS` = 40 ms: a 10 ms filterbank shift times a subsampling of 4; ``factor`` x 10 ms
for a model that subsamples by ``factor``, e.g. Whisper's 2). Encoder step ``j`` covers input frames
``[j * factor, (j + 1) * factor)``, so it starts at ``j * factor * 10`` ms, the grid of
:func:`caspes.explain.maps.pool_saliency` (the model's convolutions centre step ``j`` on input frame
``j * factor``). If a map
really tells *where in the audio* each token comes from, reading a time off each row should
give back the words' times. This module turns a map into word times and scores them against
the ground-truth word times of the synthetic corpus.

Method
    Token spans come from :mod:`caspes.analysis.dtw` (DTW over the map, or the ``argmax`` and
    ``centroid`` point baselines); see its docstring for the cost and why it is normalised so.

Words
    :func:`group_words` groups piece rows into words (a ``"▁"`` piece opens a word). A word's time
    is ``[start of its first piece's span, end of its last piece's span)`` in seconds, see
    :func:`word_times` for the exact monotonic post-processing.

Evaluation
    The hypothesis words are aligned to the reference transcript by Levenshtein distance
    (:func:`align_words`, rapidfuzz's opcodes); only words that are equal in both are scored. :func:`timestamp_errors`
    gives the mean absolute start and end errors (ms) and the share of boundaries within given
    tolerances.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein

from caspes.analysis.dtw import FRAME_SECONDS, Span, check_map, token_spans
from caspes.core.manifest import DataError, parse_word_times, read_manifest
from caspes.core.tsv import write_tsv
from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.maps import Selection, content_rows, mean_attention, normalise, pool_saliency
from caspes.explain.stores import SaliencyStore

__all__ = [
    "WORD_START",
    "group_words",
    "words_text",
    "word_times",
    "estimate_word_times",
    "align_words",
    "tolerance_key",
    "timestamp_errors",
    "MAP_ORDER",
    "has_word_times",
    "evaluate_timestamps",
    "timestamps_to_file",
]

log = logging.getLogger(__name__)

WORD_START = "\u2581"
"""SentencePiece's word-start marker ``"▁"``."""


# Slack added to the tolerances of :func:`timestamp_errors`, so that an error of exactly the
# tolerance (e.g. 0.35 - 0.30 s, which is 0.04999... in floating point) counts as within it.
_TOLERANCE_SLACK = 1e-9


def group_words(pieces: Sequence[str], marker: str = WORD_START) -> list[list[int]]:
    """Row indices of each word.

    A piece starting with ``"▁"`` opens a new word; any other piece joins the current word. A
    leading piece without ``"▁"`` opens the first word. A bare ``"▁"`` piece opens a word like any
    other ``"▁"`` piece, and the pieces without ``"▁"`` after it join it (SentencePiece writes e.g.
    ``"▁", "5"`` for a word starting with a character that it does not merge with the marker).
    Empty list for no pieces. ``marker``: the word-start character of the tokenizer (``"Ġ"`` for an
    adapted model's byte-level BPE, :attr:`caspes.hf.tokenizer.HFTokenizer.word_start`).

    >>> group_words(["▁the", "▁cat", "s", "▁sat"])
    [[0], [1, 2], [3]]
    """
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if piece.startswith(marker) or not groups:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups


def words_text(
    pieces: Sequence[str], groups: Sequence[Sequence[int]], to_text: Callable[[list[str]], str] | None = None
) -> list[str]:
    """The word strings: each group's pieces joined, with every ``"▁"`` removed; or, with
    ``to_text`` (an adapted model's tokenizer, pieces -> text), each group's pieces detokenised."""
    if to_text is not None:
        return [to_text([pieces[i] for i in group]).strip() for group in groups]
    return ["".join(pieces[i] for i in group).replace(WORD_START, "") for group in groups]


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
    marker: str = WORD_START,
) -> list[tuple[float, float]]:
    """Word times (seconds) of ``pieces`` read off ``saliency`` with ``method`` (``dtw``, ``argmax``, ``centroid``).

    ``saliency`` has exactly one row per piece (the caller keeps only content-token rows, e.g.
    no end-of-sentence or language tag). The words are those of :func:`group_words` (their text:
    :func:`words_text`). ``normalisation`` is that of :func:`dtw_cost` (``dtw`` only).
    """
    m = check_map(saliency, "saliency")
    if m.shape[0] != len(pieces):
        raise ValueError(f"saliency has {m.shape[0]} rows for {len(pieces)} pieces")
    spans = token_spans(m, method, normalisation)
    return word_times(spans, group_words(pieces, marker), frame_seconds=frame_seconds, monotonic=monotonic)


def align_words(hyp: Sequence[str], ref: Sequence[str]) -> list[tuple[int, int]]:
    """Levenshtein alignment of hypothesis words to reference words; the equal pairs.

    Unit costs for substitution, insertion and deletion (rapidfuzz's ``Levenshtein.opcodes`` on
    the word sequences). Where several alignments have the minimum cost, the one rapidfuzz's
    back-trace picks is used. Returns the ``(hyp index, ref index)`` pairs aligned as matches
    (equal words), in increasing order.
    """
    return [
        (i, j)
        for op in Levenshtein.opcodes(list(hyp), list(ref))
        if op.tag == "equal"
        for i, j in zip(range(op.src_start, op.src_end), range(op.dest_start, op.dest_end), strict=True)
    ]


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


MAP_ORDER = ("CA all", "SM^X", "SM^H")


def has_word_times(rows: Sequence[dict[str, str]]) -> bool:
    """Whether a manifest carries ground-truth word times for every row."""
    return bool(rows) and all(r.get("word_times", "").strip() for r in rows)


def evaluate_timestamps(
    xattn_path: str | Path,
    manifest_path: str | Path,
    smx_path: str | Path | None = None,
    smh_path: str | Path | None = None,
    methods: Sequence[str] = ("dtw", "argmax", "centroid"),
    pooling: str = "max2d",
    ca_norm: str = "frame",
    sm_norm: str = "token",
    factor: int = 4,
    tokenizer: Any = None,
) -> list[dict[str, object]]:
    """Per utterance, map and method: matched words and their timestamp errors.

    ``factor``: the model's subsampling (an encoder step lasts ``factor`` 10 ms frames: ours 4,
    Whisper 2); ``tokenizer``: an adapted model's :class:`~caspes.hf.tokenizer.HFTokenizer`, whose
    word-start marker groups the pieces into words and which detokenises each word (None: our
    SentencePiece pieces).

    Utterances are those of the saliency stores (the explained ones) or, without stores, all of
    the cross-attention store.  Returns records ``utterance``, ``map``, ``method``, ``words``
    (matched), ``start_ms``, ``end_ms`` (mean absolute errors) and ``within_50`` / ``within_100`` /
    ``within_200`` (share of boundaries within that many ms).
    """

    frame_seconds = FRAME_SECONDS * factor / 4  # exactly FRAME_SECONDS for ours
    marker = getattr(tokenizer, "word_start", WORD_START)
    to_text = getattr(tokenizer, "pieces_to_text", None)
    rows = {r["id"]: r for r in read_manifest(manifest_path)}
    if not has_word_times(list(rows.values())):
        raise DataError(f"{manifest_path}: no ground-truth word times (column word_times)")
    smx = SaliencyStore(smx_path) if smx_path else None
    smh = SaliencyStore(smh_path) if smh_path else None
    records: list[dict[str, object]] = []
    with CrossAttentionStore(xattn_path) as xattn:
        ids = (smh or smx).ids if (smh or smx) else xattn.ids
        for uid in ids:
            row = rows.get(uid)
            if row is None:
                raise DataError(f"{manifest_path}: utterance '{uid}' of {xattn_path} is missing")
            ca = xattn[uid]
            keep = content_rows(ca.roles)
            pieces = [p for p, k in zip(ca.pieces, keep) if k]
            if not pieces:
                continue
            att = ca.attention
            maps: dict[str, np.ndarray] = {}
            for layer in range(att.shape[0]):
                pairs = Selection(layer + 1, "avg").pairs(*att.shape[:2])
                maps[f"CA l{layer + 1}"] = normalise(mean_attention(att, pairs)[keep], ca_norm)
            everything = Selection("avg", "avg").pairs(*att.shape[:2])
            maps["CA all"] = normalise(mean_attention(att, everything)[keep], ca_norm)
            if smx is not None:
                maps["SM^X"] = normalise(pool_saliency(smx[uid].saliency[keep], pooling, factor), sm_norm)
            if smh is not None:
                maps["SM^H"] = normalise(smh[uid].saliency[keep], sm_norm)
            hyp_words = words_text(pieces, group_words(pieces, marker), to_text)
            ref_words = row["src_text"].split()
            truth = parse_word_times(row["word_times"], f"{manifest_path}:{row.get('_line', '?')}")
            if len(truth) != len(ref_words):
                raise DataError(
                    f"{manifest_path}: {uid} has {len(ref_words)} words but {len(truth)} word times"
                )
            matched = align_words(hyp_words, ref_words)
            for name, m in maps.items():
                for method in methods:
                    times = estimate_word_times(m, pieces, method, frame_seconds, marker=marker)
                    pred = [times[h] for h, _ in matched]
                    ref = [truth[r] for _, r in matched]
                    err = timestamp_errors(pred, ref)
                    records.append({
                        "utterance": uid, "map": name, "method": method, "words": len(matched),
                        "start_ms": err["start_mae_ms"], "end_ms": err["end_mae_ms"],
                        "within_50": err["within_50ms"], "within_100": err["within_100ms"],
                        "within_200": err["within_200ms"],
                    })  # fmt: skip
    for store in (smx, smh):
        if store is not None:
            store.close()
    return records


def timestamps_to_file(
    xattn_path: str | Path,
    manifest_path: str | Path,
    smx_path: str | Path | None,
    smh_path: str | Path | None,
    out_path: str | Path,
    pooling: str,
    ca_norm: str,
    sm_norm: str,
    factor: int = 4,
    tokenizer: Any = None,
) -> pd.DataFrame:
    """:func:`evaluate_timestamps` written as TSV (undefined values as ``nan``); logs the mean
    errors per map and method."""
    records = evaluate_timestamps(xattn_path, manifest_path, smx_path, smh_path, pooling=pooling,
                                  ca_norm=ca_norm, sm_norm=sm_norm, factor=factor, tokenizer=tokenizer)  # fmt: skip
    table = write_tsv(out_path, records, na_rep="nan")
    if not table.empty:
        summary = table.groupby(["map", "method"])[["start_ms", "end_ms", "within_100"]].mean().round(1)
        log.info("mean over %d utterances:\n%s", table["utterance"].nunique(), summary.to_string())
    return table
