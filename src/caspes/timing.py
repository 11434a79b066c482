"""Word timestamps from explanation maps, scored against the corpus' ground-truth word times.

For every explained ASR utterance (the hypothesis is in the source language, so its words can be
matched to the transcript's), the maps over (token, encoder frame) — the cross-attention of each
decoder layer (heads averaged), of all layers and heads, SM^X pooled to T' and SM^H — are turned
into word start/end times with :func:`caspes.timestamps.estimate_word_times` (DTW over the map, or
the per-token argmax / centre-of-mass baselines).  Hypothesis words are aligned to the reference
words (Levenshtein, exact matches only) and each matched word's predicted times are compared with
its ground-truth times (``word_times`` of the manifest, from libespeak-ng's word events).

Maps are normalised as they are correlated (CA frame-wise, saliency per token), rows restricted to
content tokens.  Encoder frame ``k`` starts at ``0.04 k`` s (10 ms shift, subsampling 4).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["MAP_ORDER", "evaluate_timestamps", "has_word_times"]

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
) -> list[dict[str, object]]:
    """Per utterance, map and method: matched words and their timestamp errors.

    Utterances are those of the saliency stores (the explained ones) or, without stores, all of
    the cross-attention store.  Returns records ``utterance``, ``map``, ``method``, ``words``
    (matched), ``start_ms``, ``end_ms`` (mean absolute errors) and ``within_50`` / ``within_100`` /
    ``within_200`` (share of boundaries within that many ms).
    """
    from .analysis import Selection, content_rows, mean_attention, normalise, pool_saliency
    from .io import DataError, parse_word_times, read_manifest
    from .saliency import SaliencyStore
    from .timestamps import align_words, estimate_word_times, group_words, timestamp_errors, words_text
    from .xattn import CrossAttentionStore

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
                maps["SM^X"] = normalise(pool_saliency(smx[uid].saliency[keep], pooling), sm_norm)
            if smh is not None:
                maps["SM^H"] = normalise(smh[uid].saliency[keep], sm_norm)
            hyp_words = words_text(pieces, group_words(pieces))
            ref_words = row["src_text"].split()
            truth = parse_word_times(row["word_times"], f"{manifest_path}:{row.get('_line', '?')}")
            if len(truth) != len(ref_words):
                raise DataError(f"{manifest_path}: {uid} has {len(ref_words)} words but {len(truth)} word times")
            matched = align_words(hyp_words, ref_words)
            for name, m in maps.items():
                for method in methods:
                    times = estimate_word_times(m, pieces, method)
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
