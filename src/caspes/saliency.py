"""Saliency stores and the sharded SPES runs of the workflow (rules ``explain_input``,
``explain_encoder``, ``gather_saliency``).

Store format (:mod:`caspes.archive`, one member per utterance) with the fields:

* ``saliency``: float16 map divided by its row maximum, (I, T, F) for SM^X or (I, T') for SM^H;
* ``scale``: float32 (I,) row maxima, so that the raw map is ``saliency * scale[:, None, ...]``
  (per-row scaling keeps ~3 significant digits of KL values of any magnitude);
* ``counts``: int32 (T, F) or (T',), how many masks occluded each element;
* ``decoder_input``, ``target_ids``, ``pieces``, ``roles``: the rows, copied from the
  cross-attention store of the same hypotheses (:mod:`caspes.xattn`), so that row ``i`` of SM,
  of CA and of the hypothesis always agree;
* ``kind`` (``"input"`` / ``"encoder"``), ``n_masks``, ``p``, ``seed``: how it was made.

Which utterances are explained: the first ``max_utterances`` of the cross-attention store (its
order is the manifest's), all when None; shard ``k`` of ``n`` takes every ``n``-th of them starting
at ``k``, so shards are balanced and the gathered store keeps the store order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .archive import RecordArchive, RecordArchiveWriter
from .io import DataError

log = logging.getLogger(__name__)

__all__ = [
    "SaliencyRecord",
    "SaliencyStore",
    "SaliencyStoreWriter",
    "explain_shard",
    "gather_shards",
    "select_ids",
    "shard_ids",
]

_FIELDS = (
    "saliency",
    "scale",
    "counts",
    "decoder_input",
    "target_ids",
    "pieces",
    "roles",
    "kind",
    "n_masks",
    "p",
    "seed",
)
KINDS = ("input", "encoder")


@dataclass
class SaliencyRecord:
    """One utterance of a saliency store (raw, un-normalised map in float32)."""

    id: str
    saliency: np.ndarray
    counts: np.ndarray
    decoder_input: list[int]
    target_ids: list[int]
    pieces: list[str]
    roles: list[str]
    kind: str
    n_masks: int
    p: float
    seed: int


class SaliencyStoreWriter(RecordArchiveWriter):
    """Writer of :class:`SaliencyRecord` s (atomic on close)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _FIELDS, kind="saliency store")

    def add_record(self, r: SaliencyRecord) -> None:
        sal = np.asarray(r.saliency, dtype=np.float32)
        if r.kind not in KINDS:
            raise ValueError(f"{r.id}: kind must be one of {KINDS}, got {r.kind!r}")
        want = 3 if r.kind == "input" else 2
        if sal.ndim != want or sal.shape[0] != len(r.target_ids):
            raise ValueError(f"{r.id}: {r.kind} saliency must be {want}-D with one row per target, got {sal.shape}")
        if np.asarray(r.counts).shape != sal.shape[1:]:
            raise ValueError(f"{r.id}: counts shape {np.shape(r.counts)} does not match saliency {sal.shape}")
        if not np.isfinite(sal).all() or (sal < 0).any():
            raise ValueError(f"{r.id}: saliency must be finite and >= 0")
        scale = sal.reshape(sal.shape[0], -1).max(axis=1)
        safe = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (sal.ndim - 1))
        self.add(
            r.id,
            {
                "saliency": (sal / safe).astype(np.float16),
                "scale": scale.astype(np.float32),
                "counts": np.asarray(r.counts, dtype=np.int32),
                "decoder_input": np.asarray(r.decoder_input, dtype=np.int32),
                "target_ids": np.asarray(r.target_ids, dtype=np.int32),
                "pieces": np.array(list(r.pieces), dtype=np.str_).reshape(len(r.pieces)),
                "roles": np.array(list(r.roles), dtype=np.str_).reshape(len(r.roles)),
                "kind": np.array(r.kind, dtype=np.str_),
                "n_masks": np.array(r.n_masks, dtype=np.int64),
                "p": np.array(r.p, dtype=np.float64),
                "seed": np.array(r.seed, dtype=np.int64),
            },
        )


class SaliencyStore(RecordArchive):
    """Reader: ``store[uid]`` -> :class:`SaliencyRecord` (one utterance decompressed at a time)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _FIELDS, kind="saliency store")

    def __getitem__(self, uid: str) -> SaliencyRecord:  # type: ignore[override]
        d = super().__getitem__(uid)
        sal = d["saliency"].astype(np.float32)
        scale = d["scale"].astype(np.float32).reshape((-1,) + (1,) * (sal.ndim - 1))
        return SaliencyRecord(
            id=uid,
            saliency=sal * scale,
            counts=d["counts"].astype(np.int64),
            decoder_input=d["decoder_input"].astype(np.int64).tolist(),
            target_ids=d["target_ids"].astype(np.int64).tolist(),
            pieces=[str(p) for p in d["pieces"]],
            roles=[str(r) for r in d["roles"]],
            kind=str(d["kind"]),
            n_masks=int(d["n_masks"]),
            p=float(d["p"]),
            seed=int(d["seed"]),
        )

    def __enter__(self) -> SaliencyStore:
        return self


# --------------------------------------------------------------------------- selection
def select_ids(ids: Sequence[str], max_utterances: int | None) -> list[str]:
    """The first ``max_utterances`` ids (all when None)."""
    if max_utterances is not None and max_utterances < 1:
        raise ValueError(f"max_utterances must be >= 1 or null, got {max_utterances}")
    return list(ids) if max_utterances is None else list(ids)[:max_utterances]


def shard_ids(ids: Sequence[str], index: int, count: int) -> list[str]:
    """Ids of shard ``index`` (0-based) of ``count``: every ``count``-th id from ``index``."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index {index} of {count} is out of range")
    return list(ids)[index::count]


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
        options: :class:`~caspes.spes.OcclusionOptions`.
        shard: (index, count), 0-based.
        max_utterances: explain only the first this many utterances (None: all).
        segments_path: segmentation store (SM^X only).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...

    Returns:
        Summary: utterances, seconds per utterance, masks, batch size.
    """
    from tqdm import tqdm

    from .features import FeatureReader
    from .segment import SegmentationStore
    from .spes import explain_encoder, explain_input
    from .train import load_model, resolve_device
    from .xattn import CrossAttentionStore

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
        for uid in tqdm(mine, desc=f"SM^{'X' if kind == 'input' else 'H'}", disable=not progress, mininterval=5):
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


def gather_shards(shard_paths: Sequence[str | Path], out_path: str | Path, order: Sequence[str] | None = None) -> int:
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
        order = [s.ids[k] for k in range(max((len(s) for s in stores), default=0)) for s in stores if k < len(s)]
    missing = [u for u in order if u not in where]
    if missing or len(order) != len(where):
        raise DataError(f"gathered shards do not match the expected utterances (missing {missing[:5]})")
    with RecordArchiveWriter(out_path, _FIELDS, kind="saliency store") as writer:
        for uid in order:
            writer.add_raw(uid, where[uid].raw(uid))
    return len(order)
