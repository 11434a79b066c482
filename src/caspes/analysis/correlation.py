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

The corpus figure is the arithmetic mean of r over utterances.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr

from caspes.core.manifest import DataError
from caspes.core.tsv import write_tsv
from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.maps import POOLINGS, Selection, content_rows, mean_attention, normalise, pool_saliency
from caspes.explain.stores import SaliencyStore

__all__ = ["selections", "pearson", "correlate", "summarise", "correlate_stores", "correlations_to_file"]

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
    factor: int = 4,
) -> list[dict[str, object]]:
    """Correlate every utterance of a saliency store with its cross-attention.

    SM^X maps are pooled to T' (windows of ``factor`` frames, the model's subsampling: ours 4,
    Whisper 2) with each of :data:`POOLINGS`; SM^H maps are used as they are
    (pooling ``"none"``).  The rows of both stores must be the same (they come from the same
    hypotheses); a mismatch is an error naming the utterance.

    Returns:
        Records ``utterance``, ``pooling``, ``layer``, ``head``, ``r`` (NaN when undefined).
    """

    records: list[dict[str, object]] = []
    with CrossAttentionStore(xattn_path) as xattn, SaliencyStore(saliency_path) as store:
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
                for rec in correlate(ca.attention, m, ca.roles, ca_norm=ca_norm, sm_norm=sm_norm):
                    records.append({"utterance": uid, "pooling": pooling, **rec})
    return records


def correlations_to_file(
    xattn_path: str | Path,
    saliency_path: str | Path,
    out_path: str | Path,
    ca_norm: str,
    sm_norm: str,
    factor: int = 4,
) -> list[dict[str, object]]:
    """:func:`correlate_stores` written as TSV (utterance, pooling, layer, head, r; undefined r as
    ``nan``); logs the layer and head averages and how many correlations are undefined."""
    records = correlate_stores(xattn_path, saliency_path, ca_norm, sm_norm, factor)
    table = write_tsv(out_path, records, columns=["utterance", "pooling", "layer", "head", "r"], na_rep="nan")
    for row in summarise(records, ["pooling", "layer", "head"]):
        if row["head"] == "avg" or row["layer"] == "avg":
            log.info("%s", row)
    undefined = int(table["r"].isna().sum())
    if undefined:
        log.warning(
            "%d utterance-level correlations are undefined (constant map) and left out of means", undefined
        )
    return records
