"""Cross-attention against saliency: the per-utterance Pearson correlations behind Tables 1-4
and 6 (paper §3.3, §5; spec §5 and §10). The normalisations, the pooling of SM^X to the encoder
grid and the (layer, head) selections are in :mod:`caspes.explain.maps`.

For one utterance with cross-attention ``A`` (L, H, I, T') and a saliency map ``S`` (I, T') (SM^H,
or SM^X pooled from (I, T, F) by :func:`~caspes.explain.maps.pool_saliency`):

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

The corpus figure is the arithmetic mean of r over utterances.  Beside r, every record has the
Spearman rank correlation and Kendall's tau-b of the same two flattened maps (NaN when undefined).

Reliability of the saliency map (beyond the paper).  SPES maps are Monte-Carlo estimates: the
engine also keeps the map of each half of the masks (:func:`caspes.explain.spes.mask_half`).  The
two half maps go through exactly the steps of the comparison (content rows, the same pooling to
T', the same per-token normalisation) and their Pearson r is the *split-half* correlation
``r_hh``; the Spearman-Brown formula ``2 r_hh / (1 + r_hh)`` estimates the reliability of the map
from the whole budget (its expected correlation with an independent map of the same budget).
Cross-attention is deterministic (reliability 1), so noise in the map attenuates r(CA, SM) by
about ``sqrt(reliability)``; the tables report the noise-corrected ``mean r / sqrt(mean
reliability)`` beside the raw mean (:func:`caspes.analysis.bootstrap.disattenuated_ci`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, pearsonr, rankdata

from caspes.core.manifest import DataError
from caspes.core.tsv import write_tsv
from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.maps import POOLINGS, Selection, content_rows, mean_attention, normalise, pool_saliency
from caspes.explain.stores import SaliencyStore

__all__ = [
    "selections",
    "pearson",
    "rank_correlations",
    "spearman_brown",
    "split_half",
    "mean_reliability",
    "correlate",
    "summarise",
    "correlate_stores",
    "correlations_to_file",
    "map_agreement",
    "COLUMNS",
]

#: Columns of a correlation file (rule ``correlate``).
COLUMNS = ["utterance", "pooling", "layer", "head", "r", "spearman", "kendall", "split_half", "reliability"]

log = logging.getLogger(__name__)


def selections(n_layers: int, n_heads: int) -> list[Selection]:
    """Every single head, every layer's head average, every head's layer average, and all."""
    out = [Selection(layer, head) for layer in range(1, n_layers + 1) for head in range(1, n_heads + 1)]
    out += [Selection(layer, "avg") for layer in range(1, n_layers + 1)]
    out += [Selection("avg", head) for head in range(1, n_heads + 1)]
    return out + [Selection("avg", "avg")]


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two equally shaped maps (flattened); NaN when undefined (a constant input)."""

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {np.shape(a)} vs {np.shape(b)}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pearsonr(x, y).statistic)


def rank_correlations(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(Spearman rho, Kendall tau-b) of two equally shaped maps (flattened); NaN when undefined."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size: {np.shape(a)} vs {np.shape(b)}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan
    rho = pearson(rankdata(x), rankdata(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = float(kendalltau(x, y).statistic)
    return rho, tau


def spearman_brown(r_half: float) -> float:
    """Reliability of a map from the whole budget, from the correlation ``r_half`` of its two
    half-budget maps: ``2 r / (1 + r)`` (NaN for NaN or r <= -1)."""
    if not math.isfinite(r_half) or r_half <= -1.0:
        return math.nan
    return 2.0 * r_half / (1.0 + r_half)


def split_half(
    halves: np.ndarray | None,
    roles: Sequence[str],
    pooling: str = "none",
    factor: int = 4,
    sm_norm: str = "token",
) -> float:
    """Pearson r of the two half-budget maps of one utterance, on what enters the correlation:
    content rows, pooled to T' (``pooling``: one of :data:`POOLINGS` for SM^X (2, I, T, F),
    ``"none"`` for SM^H (2, I, T')), normalised per ``sm_norm``.  NaN when ``halves`` is None,
    no content row is left, or a half map is constant."""
    if halves is None:
        return math.nan
    h = np.asarray(halves, dtype=np.float64)
    keep = content_rows(roles)
    if h.shape[0] != 2 or h.shape[1] != keep.size:
        raise ValueError(f"halves must be (2, I, ...) with I={keep.size} rows, got {h.shape}")
    if not keep.any():
        return math.nan
    maps = [pool_saliency(m, pooling, factor) if pooling != "none" else m for m in h]
    a, b = (normalise(m[keep], sm_norm) for m in maps)
    return pearson(a, b)


def mean_reliability(table: pd.DataFrame, pooling: str) -> tuple[float, float, int, int]:
    """(mean split-half r, mean Spearman-Brown reliability, utterances with a known one, with an
    unknown one) of the maps of correlation records ``table`` (:data:`COLUMNS`) for ``pooling``:
    one value per utterance (every selection of an utterance carries the same one)."""
    per_utt = table[table["pooling"].astype(str) == pooling].drop_duplicates("utterance")
    known = per_utt["reliability"].notna()
    if not known.any():
        return math.nan, math.nan, 0, int(len(per_utt))
    return (
        float(per_utt["split_half"][known].mean()),
        float(per_utt["reliability"][known].mean()),
        int(known.sum()),
        int((~known).sum()),
    )


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
        attention: (L, H, I, T') cross-attention (:mod:`caspes.decode.xattn`).
        saliency: (I, T') SM^H or pooled SM^X of the same rows.
        roles: row roles (``lang`` / ``token`` / ``eos``); only ``token`` rows are compared.
        chosen: selections (default: :func:`selections` of the attention's L and H).
        ca_norm, sm_norm: normalisation axes (:func:`normalise`).

    Returns:
        One dict per selection: ``layer``, ``head``, ``r``, ``spearman``, ``kendall`` (NaN when
        undefined).
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
            out.append({"layer": sel.layer, "head": sel.head, "r": math.nan, "spearman": math.nan,
                        "kendall": math.nan})  # fmt: skip
            continue
        ca = normalise(mean_attention(att, sel.pairs(n_layers, n_heads))[keep], ca_norm)
        rho, tau = rank_correlations(ca, sm)
        out.append(
            {"layer": sel.layer, "head": sel.head, "r": pearson(ca, sm), "spearman": rho, "kendall": tau}
        )
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
    factor: int = 4,
) -> list[dict[str, object]]:
    """Correlate every utterance of a saliency store with its cross-attention.

    SM^X maps are pooled to T' (windows of ``factor`` frames, the model's subsampling: ours 4,
    Whisper 2) with each of :data:`POOLINGS`; SM^H maps are used as they are
    (pooling ``"none"``).  The rows of both stores must be the same (they come from the same
    hypotheses); a mismatch is an error naming the utterance.

    Returns:
        Records with the fields of :data:`COLUMNS`: ``r``, ``spearman`` and ``kendall`` of each
        selection, and the map's ``split_half`` r and Spearman-Brown ``reliability``
        (:func:`split_half`; NaN when undefined or when the store keeps no half maps).
    """

    records: list[dict[str, object]] = []
    with CrossAttentionStore(xattn_path) as xattn, SaliencyStore(saliency_path, halves=True) as store:
        for uid in store.ids:
            if uid not in xattn:
                raise DataError(f"{saliency_path}: utterance '{uid}' is not in {xattn_path}")
            sal, ca = store[uid], xattn[uid]
            if sal.target_ids != ca.target_ids:
                raise DataError(
                    f"{uid}: the saliency and cross-attention rows differ ({saliency_path}, {xattn_path})"
                )
            if sal.kind == "input":
                maps = {p: pool_saliency(sal.saliency, p, factor) for p in POOLINGS}
            else:
                maps = {"none": sal.saliency}
            for pooling, m in maps.items():
                if m.shape[1] != ca.encoder_length:
                    raise DataError(
                        f"{uid}: map has {m.shape[1]} frames, cross-attention T'={ca.encoder_length}"
                    )
                r_half = split_half(sal.halves, ca.roles, pooling, factor, sm_norm)
                reliability = {"split_half": r_half, "reliability": spearman_brown(r_half)}
                for rec in correlate(ca.attention, m, ca.roles, ca_norm=ca_norm, sm_norm=sm_norm):
                    records.append({"utterance": uid, "pooling": pooling, **rec, **reliability})
    return records


def correlations_to_file(
    xattn_path: str | Path,
    saliency_path: str | Path,
    out_path: str | Path,
    ca_norm: str,
    sm_norm: str,
    factor: int = 4,
) -> list[dict[str, object]]:
    """:func:`correlate_stores` written as TSV (:data:`COLUMNS`; undefined values as ``nan``); logs
    the layer and head averages, the mean reliability of the map and how many correlations are
    undefined."""
    records = correlate_stores(xattn_path, saliency_path, ca_norm, sm_norm, factor)
    table = write_tsv(out_path, records, columns=COLUMNS, na_rep="nan")
    for pooling in table["pooling"].astype(str).unique():
        _, reliability, known, unknown = mean_reliability(table, pooling)
        log.info("pooling %s: mean reliability %.3f over %d utterances (%d unknown)", pooling, reliability,
                 known, unknown)  # fmt: skip
    for row in summarise(records, ["pooling", "layer", "head"]):
        if row["head"] == "avg" or row["layer"] == "avg":
            log.info("%s", row)
    undefined = int(table["r"].isna().sum())
    if undefined:
        log.warning(
            "%d utterance-level correlations are undefined (constant map) and left out of means", undefined
        )
    return records


def map_agreement(
    path_a: str | Path, path_b: str | Path, pooling: str = "max2d", factor: int = 4, sm_norm: str = "token"
) -> list[dict[str, object]]:
    """Per utterance, how closely the maps of two saliency stores of the same utterances agree, on
    what enters the correlation (content rows, SM^X pooled with ``pooling``, normalised per
    ``sm_norm``): their Pearson r, and each map's split-half r and reliability.  Used to measure
    what a change of precision or of device does to the maps (``tools/compare_maps.py``).

    The stores must hold the same utterances with the same rows; an utterance only in one of them
    is an error naming it (nothing is dropped silently).
    """
    records: list[dict[str, object]] = []
    with SaliencyStore(path_a, halves=True) as a, SaliencyStore(path_b, halves=True) as b:
        only = sorted(set(a.ids) ^ set(b.ids))
        if only:
            raise DataError(
                f"{path_a} and {path_b} hold different utterances, e.g. '{only[0]}' ({len(only)})"
            )
        for uid in a.ids:
            ra, rb = a[uid], b[uid]
            if ra.target_ids != rb.target_ids or ra.kind != rb.kind:
                raise DataError(f"{uid}: the rows or the kind of map differ ({path_a}, {path_b})")
            pool = pooling if ra.kind == "input" else "none"
            keep = content_rows(ra.roles)
            maps = [
                pool_saliency(r.saliency, pool, factor) if pool != "none" else r.saliency for r in (ra, rb)
            ]
            r = pearson(*(normalise(m[keep], sm_norm) for m in maps)) if keep.any() else math.nan
            rec: dict[str, object] = {"utterance": uid, "kind": ra.kind, "pooling": pool, "r": r}
            for name, rec_x in (("a", ra), ("b", rb)):
                half = split_half(rec_x.halves, rec_x.roles, pool, factor, sm_norm)
                rec |= {f"split_half_{name}": half, f"reliability_{name}": spearman_brown(half)}
            records.append(rec)
    return records
