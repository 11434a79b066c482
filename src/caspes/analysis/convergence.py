"""How SPES maps converge with the mask budget (beyond the paper): for a fixed subset of utterances
of one run, r(CA, SM^X), r(CA, SM^H) and the reliability of each map as the budget grows (rule
``convergence_maps``; the table and figure: :mod:`caspes.report.convergence`).

One engine run per utterance and map, with the largest budget, gives the maps of every smaller
budget from its first masks (``prefixes`` of :func:`~caspes.explain.spes.explain_input`): SM^X
budget ``b`` uses the first ``b // L`` masks of each of the ``L`` SLIC levels, as a run with
``n_masks = b`` does.  The budgets are therefore nested (the maps of a budget share their masks
with the larger ones), which is what a user raising the budget gets on the same seed.

Each map is compared as in the correlation files (:func:`caspes.analysis.correlation.correlate`):
content rows, SM^X pooled to T' with the configured pooling, the configured normalisations, and
the all-layers-all-heads average of cross-attention (the tables' l-AVG).  Its reliability is the
split-half r and its Spearman-Brown estimate (:func:`~caspes.analysis.correlation.split_half`).
The utterances are the first ``utterances`` of the run's explained ones (the same selection as
the saliency stores, :func:`caspes.explain.selection.select_ids`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from caspes.analysis.correlation import correlate, spearman_brown, split_half
from caspes.core.manifest import DataError
from caspes.core.tsv import write_tsv
from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.maps import Selection, pool_saliency
from caspes.explain.segment import SegmentationStore
from caspes.explain.selection import select_ids
from caspes.explain.spes import OcclusionOptions, explain_encoder, explain_input
from caspes.features import FeatureReader
from caspes.hf.loading import load_for_inference
from caspes.model.inference import resolve_device

__all__ = ["COLUMNS", "check_budgets", "convergence_records", "convergence_to_file"]

log = logging.getLogger(__name__)

#: Columns of a convergence file.
COLUMNS = ["utterance", "map", "budget", "masks", "r", "split_half", "reliability"]

_ALL = Selection("avg", "avg")


def check_budgets(budgets: Sequence[int], what: str) -> list[int]:
    """The budgets sorted; an error naming ``what`` unless they are distinct positive integers."""
    values = [int(b) for b in budgets]
    if not values or any(b < 1 for b in values) or len(set(values)) != len(values):
        raise ValueError(f"{what}: budgets must be distinct positive integers, got {list(budgets)}")
    return sorted(values)


def convergence_records(
    checkpoint: str | Path,
    manifest: str | Path,
    xattn_path: str | Path,
    segments_path: str | Path,
    input_options: Mapping[str, Any],
    encoder_options: Mapping[str, Any],
    input_budgets: Sequence[int],
    encoder_budgets: Sequence[int],
    utterances: int,
    pooling: str = "max2d",
    factor: int = 4,
    ca_norm: str = "frame",
    sm_norm: str = "token",
    device: str = "auto",
    progress: bool = True,
) -> list[dict[str, object]]:
    """One record per utterance, map (``smx`` / ``smh``) and budget (:data:`COLUMNS`; ``masks``
    is the number actually used: SM^X rounds down to a multiple of the levels).

    ``input_options`` / ``encoder_options`` are :class:`~caspes.explain.spes.OcclusionOptions`
    fields as the explain rules get them (their ``n_masks`` is replaced by the largest budget)."""
    budgets = {
        "smx": check_budgets(input_budgets, "analysis.convergence.input_budgets"),
        "smh": check_budgets(encoder_budgets, "analysis.convergence.encoder_budgets"),
    }
    dev = resolve_device(device)
    model, _ = load_for_inference(checkpoint, dev)
    reader = FeatureReader(manifest)
    records: list[dict[str, object]] = []
    with CrossAttentionStore(xattn_path) as xattn, SegmentationStore(segments_path) as segments:
        chosen = select_ids(xattn.ids, utterances)
        if len(chosen) < utterances:
            log.warning("only %d utterances were decoded (%d asked for)", len(chosen), utterances)
        for uid in tqdm(chosen, desc="convergence", disable=not progress):
            if uid not in reader:
                raise DataError(f"{manifest}: utterance '{uid}' of {xattn_path} is not in the manifest")
            if uid not in segments:
                raise DataError(
                    f"{segments_path}: no segmentation of '{uid}' (explain.max_utterances too small?)"
                )
            ca, feats = xattn[uid], reader[uid]
            for name, b in budgets.items():
                t0 = time.perf_counter()
                if name == "smx":
                    opts = OcclusionOptions(**{**input_options, "n_masks": b[-1]})
                    res = explain_input(
                        model, feats, ca.decoder_input, segments.levels(uid), opts, uid, prefixes=b
                    )
                else:
                    opts = OcclusionOptions(**{**encoder_options, "n_masks": b[-1]})
                    res = explain_encoder(model, feats, ca.decoder_input, opts, uid, prefixes=b)
                for budget in b:
                    part = res.prefixes[budget]
                    pool = pooling if name == "smx" else "none"
                    sal = pool_saliency(part.saliency, pool, factor) if name == "smx" else part.saliency
                    if sal.shape[1] != ca.encoder_length:
                        raise DataError(
                            f"{uid}: map has {sal.shape[1]} frames, cross-attention T'={ca.encoder_length}"
                        )
                    (rec,) = correlate(ca.attention, sal, ca.roles, [_ALL], ca_norm, sm_norm)
                    r_half = split_half(part.halves, ca.roles, pool, factor, sm_norm)
                    records.append({
                        "utterance": uid, "map": name, "budget": budget, "masks": part.n_masks, "r": rec["r"],
                        "split_half": r_half, "reliability": spearman_brown(r_half),
                    })  # fmt: skip
                log.info("%s %s: budgets %s in %.1fs; reliability %s", uid, name, b, time.perf_counter() - t0,
                         [round(float(r["reliability"]), 3) for r in records[-len(b):]])  # fmt: skip
    return records


def convergence_to_file(out_path: str | Path, **kwargs: Any) -> list[dict[str, object]]:
    """:func:`convergence_records` written as TSV (undefined values as ``nan``)."""
    records = convergence_records(**kwargs)
    write_tsv(out_path, records, columns=COLUMNS, na_rep="nan")
    return records
