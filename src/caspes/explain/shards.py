"""The sharded SPES runs of the workflow (rules ``explain_input``, ``explain_encoder``,
``gather_saliency``): one shard's maps into a store of its own (:mod:`caspes.explain.stores`),
then the shards gathered into one store in selection order (:mod:`caspes.explain.selection`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from caspes.core.manifest import DataError
from caspes.core.tsv import write_tsv
from caspes.core.zipstore import RecordArchive, RecordArchiveWriter
from caspes.decode.xattn import CrossAttentionStore
from caspes.explain.segment import SegmentationStore
from caspes.explain.selection import select_ids, shard_ids
from caspes.explain.spes import OcclusionOptions, explain_encoder, explain_input
from caspes.explain.stores import _FIELDS, KINDS, SaliencyRecord, SaliencyStoreWriter
from caspes.features import FeatureReader
from caspes.model.checkpoint import load_model
from caspes.model.inference import resolve_device

__all__ = ["explain_shard", "gather_shards", "explain_shard_to_files", "gather_shards_to_files"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- workflow steps
def explain_shard(
    kind: str,
    checkpoint: str | Path,
    manifest: str | Path,
    xattn_path: str | Path,
    out_path: str | Path,
    options: Any,
    shard: tuple[int, int] = (0, 1),
    max_utterances: int | None = None,
    segments_path: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, float]:
    """Compute SM^X (``kind="input"``) or SM^H (``"encoder"``) for one shard of a split.

    Args:
        kind: ``"input"`` or ``"encoder"``.
        checkpoint: the model's averaged checkpoint.
        manifest: the feature manifest that was decoded (CMVN is applied when reading).
        xattn_path: cross-attention store of the decoded hypotheses (gives each row's ids).
        out_path: shard store to write.
        options: :class:`~caspes.explain.spes.OcclusionOptions`.
        shard: (index, count), 0-based.
        max_utterances: explain only the first this many utterances (None: all).
        segments_path: segmentation store (SM^X only).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...

    Returns:
        Summary: utterances, seconds per utterance, masks, batch size.
    """

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "input" and segments_path is None:
        raise ValueError("SM^X needs a segmentation store")
    dev = resolve_device(device)
    model, _ = load_model(checkpoint, dev)
    reader = FeatureReader(manifest)
    xattn = CrossAttentionStore(xattn_path)
    segments = SegmentationStore(segments_path) if kind == "input" else None
    chosen = select_ids(xattn.ids, max_utterances)
    mine = shard_ids(chosen, *shard)
    log.info(
        "%s saliency: shard %d of %d, %d of the %d selected utterances (%d decoded) on %s, %s",
        kind, shard[0] + 1, shard[1], len(mine), len(chosen), len(xattn), dev, options,
    )  # fmt: skip
    start = time.perf_counter()
    masks = 0
    batch = 0
    with xattn, segments or contextlib.nullcontext(), SaliencyStoreWriter(out_path) as writer:
        for uid in tqdm(
            mine, desc=f"SM^{'X' if kind == 'input' else 'H'}", disable=not progress, mininterval=5
        ):
            if uid not in reader:
                raise DataError(f"{manifest}: utterance '{uid}' of {xattn_path} is not in the manifest")
            rec = xattn[uid]
            feats = reader[uid]
            t0 = time.perf_counter()
            if kind == "input":
                assert segments is not None
                if uid not in segments:
                    raise DataError(f"{segments_path}: no segmentation of '{uid}'")
                res = explain_input(model, feats, rec.decoder_input, segments.levels(uid), options, uid)
            else:
                res = explain_encoder(model, feats, rec.decoder_input, options, uid)
            log.info("%s: I=%d, shape %s, %d masks in %.2fs", uid, len(rec.target_ids), res.saliency.shape[1:],
                     res.n_masks, time.perf_counter() - t0)  # fmt: skip
            writer.add_record(
                SaliencyRecord(
                    id=uid,
                    saliency=res.saliency,
                    counts=res.counts,
                    decoder_input=rec.decoder_input,
                    target_ids=rec.target_ids,
                    pieces=rec.pieces,
                    roles=rec.roles,
                    kind=kind,
                    n_masks=res.n_masks,
                    p=options.p,
                    seed=options.seed,
                )
            )
            masks += res.n_masks
            batch = max(batch, res.batch_size)
    seconds = time.perf_counter() - start
    summary = {
        "utterances": len(mine),
        "seconds": round(seconds, 2),
        "seconds_per_utterance": round(seconds / max(len(mine), 1), 3),
        "masks_per_second": round(masks / seconds, 1) if seconds > 0 else 0.0,
        "batch_size": batch,
    }
    log.info("done: %s", summary)
    return summary


def gather_shards(
    shard_paths: Sequence[str | Path], out_path: str | Path, order: Sequence[str] | None = None
) -> int:
    """Concatenate shard stores into one (members copied, not re-encoded).

    ``order``: the utterance order of the result (default: round-robin over the shards, which
    restores the selection order of :func:`shard_ids`).  Every utterance must be present once.
    """
    stores = [RecordArchive(p, kind="saliency store") for p in shard_paths]
    try:
        return _gather(stores, out_path, order)
    finally:
        for s in stores:
            s.close()


def _gather(stores: Sequence[RecordArchive], out_path: str | Path, order: Sequence[str] | None) -> int:
    where: dict[str, RecordArchive] = {}
    for s in stores:
        for uid in s.ids:
            if uid in where:
                raise DataError(f"utterance '{uid}' is in both {where[uid].path} and {s.path}")
            where[uid] = s
    if order is None:
        order = [
            s.ids[k] for k in range(max((len(s) for s in stores), default=0)) for s in stores if k < len(s)
        ]
    missing = [u for u in order if u not in where]
    if missing or len(order) != len(where):
        raise DataError(f"gathered shards do not match the expected utterances (missing {missing[:5]})")
    with RecordArchiveWriter(out_path, _FIELDS, kind="saliency store") as writer:
        for uid in order:
            writer.add_raw(uid, where[uid].raw(uid))
    return len(order)


def explain_shard_to_files(
    kind: str,
    checkpoint: str | Path,
    manifest: str | Path,
    xattn_path: str | Path,
    store_path: str | Path,
    timing_path: str | Path,
    options: Mapping[str, Any],
    scatteritem: str,
    max_utterances: int | None = None,
    segments_path: str | Path | None = None,
    device: str = "auto",
) -> dict[str, object]:
    """:func:`explain_shard` for Snakemake's scatter item ``"<i>-of-<n>"`` (1-based), with the
    config's occlusion settings; writes the shard's one-row timing TSV (shard, cost, device)."""
    index, count = (int(x) for x in scatteritem.split("-of-"))
    summary: dict[str, object] = dict(
        explain_shard(
            kind,
            checkpoint,
            manifest,
            xattn_path,
            store_path,
            OcclusionOptions(**options),
            shard=(index - 1, count),
            max_utterances=max_utterances,
            segments_path=segments_path,
            device=device,
        )  # fmt: skip
    )
    summary["device"] = "cuda" if torch.cuda.is_available() and device != "cpu" else "cpu"
    row = {"shard": scatteritem, **summary}
    write_tsv(timing_path, [row])
    return row


def gather_shards_to_files(
    shard_paths: Sequence[str | Path],
    timing_paths: Sequence[str | Path],
    store_path: str | Path,
    timing_path: str | Path,
) -> int:
    """:func:`gather_shards`, plus the shards' timing rows in one TSV; returns the utterance count."""
    n = gather_shards(list(shard_paths), store_path)
    timing = pd.concat([pd.read_csv(p, sep="\t") for p in timing_paths], ignore_index=True)
    write_tsv(timing_path, timing)
    log.info("%d utterances from %d shards; %.2f s per utterance", n, len(timing),
             timing["seconds"].sum() / max(n, 1))  # fmt: skip
    return n
