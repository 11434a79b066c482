"""The sharded SPES runs of the workflow (rules ``explain_input``, ``explain_encoder``,
``gather_saliency``): one shard's maps into a store of its own (:mod:`caspes.explain.stores`),
then the shards gathered into one store in selection order (:mod:`caspes.explain.selection`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
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
from caspes.explain.resume import PartialStore, inputs_digest, partial_root, run_key
from caspes.explain.segment import SegmentationStore
from caspes.explain.selection import select_ids, shard_ids
from caspes.explain.spes import OcclusionOptions, explain_encoder, explain_input
from caspes.explain.stores import _FIELDS, KINDS, SaliencyRecord, SaliencyStoreWriter
from caspes.features import FeatureReader
from caspes.hf.loading import load_for_inference
from caspes.model.inference import resolve_bf16, resolve_device

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
    resume_dir: str | Path | None = None,
) -> dict[str, float]:
    """Compute SM^X (``kind="input"``) or SM^H (``"encoder"``) for one shard of a split.

    With ``resume_dir`` (a ``<map>.partial`` folder, :mod:`caspes.explain.resume`) every finished
    utterance is kept there as soon as it is done, and utterances an earlier attempt finished with
    the same settings, inputs and code are taken from it instead of recomputed.

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
        resume_dir: partial store folder (None: no resume).

    Returns:
        Summary: utterances, how many were resumed, seconds per utterance, masks, batch size.
    """

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "input" and segments_path is None:
        raise ValueError("SM^X needs a segmentation store")
    dev = resolve_device(device)
    # "auto" precision decided here, for this device: the resume key and the log carry the decision
    options = dataclasses.replace(options, autocast_bf16=resolve_bf16(options.autocast_bf16, dev))
    model, _ = load_for_inference(checkpoint, dev)
    reader = FeatureReader(manifest)
    xattn = CrossAttentionStore(xattn_path)
    segments = SegmentationStore(segments_path) if kind == "input" else None
    chosen = select_ids(xattn.ids, max_utterances)
    mine = shard_ids(chosen, *shard)
    log.info(
        "%s saliency: shard %d of %d, %d of the %d selected utterances (%d decoded) on %s, %s",
        kind, shard[0] + 1, shard[1], len(mine), len(chosen), len(xattn), dev, options,
    )  # fmt: skip
    for stale in Path(out_path).parent.glob(f".{Path(out_path).name}.*.tmp"):
        log.info("removing %s, left by a killed attempt", stale)  # its finished maps are in the partial store
        stale.unlink(missing_ok=True)
    partial = None
    if resume_dir is not None:
        partial = PartialStore(resume_dir, run_key(kind, options, checkpoint, dev))
        log.info("finished utterances are kept in %s (resume after a killed job)", partial.folder)
    start = time.perf_counter()
    masks = 0
    batch = 0
    resumed = computed = 0
    with xattn, segments or contextlib.nullcontext(), SaliencyStoreWriter(out_path) as writer:
        for uid in tqdm(
            mine, desc=f"SM^{'X' if kind == 'input' else 'H'}", disable=not progress, mininterval=5
        ):
            if uid not in reader:
                raise DataError(f"{manifest}: utterance '{uid}' of {xattn_path} is not in the manifest")
            rec = xattn[uid]
            feats = reader[uid]
            levels: list = []
            if kind == "input":
                assert segments is not None
                if uid not in segments:
                    raise DataError(f"{segments_path}: no segmentation of '{uid}'")
                levels = segments.levels(uid)
            digest = inputs_digest(feats, rec.decoder_input, levels) if partial else ""
            blob = partial.get(uid, digest) if partial else None
            if blob is not None:
                log.info("%s: finished by an earlier attempt, taken from %s", uid, partial.folder)  # type: ignore[union-attr]
                writer.add_raw(uid, blob)
                resumed += 1
                continue
            t0 = time.perf_counter()
            if kind == "input":
                res = explain_input(model, feats, rec.decoder_input, levels, options, uid)
            else:
                res = explain_encoder(model, feats, rec.decoder_input, options, uid)
            log.info("%s: I=%d, shape %s, %d masks in %.2fs", uid, len(rec.target_ids), res.saliency.shape[1:],
                     res.n_masks, time.perf_counter() - t0)  # fmt: skip
            blob = writer.encode_record(
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
                    halves=res.halves,
                )
            )
            if partial is not None:
                partial.put(uid, digest, blob)
            writer.add_raw(uid, blob)
            masks += res.n_masks
            batch = max(batch, res.batch_size)
            computed += 1
            _injected_kill(computed)
    seconds = time.perf_counter() - start
    if resumed:
        log.info("resumed: %d of %d utterances were finished by an earlier attempt, %d computed now",
                 resumed, len(mine), len(mine) - resumed)  # fmt: skip
    summary = {
        "utterances": len(mine),
        "resumed": resumed,
        "seconds": round(seconds, 2),
        "seconds_per_utterance": round(seconds / max(computed, 1), 3),  # resumed ones cost nothing here
        "masks_per_second": round(masks / seconds, 1) if seconds > 0 else 0.0,
        "batch_size": batch,
    }
    log.info("done: %s", summary)
    return summary


#: Test-only fault injection: ``"<n>:<marker file>"`` makes the first shard job that computes
#: ``n`` utterances kill itself with SIGKILL right after keeping the n-th one (the marker, created
#: exclusively, makes it happen once per test).  The integration and SLURM tests use it to check
#: resume and ``retries``; nothing else sets it.
KILL_SWITCH = "CASPES_TEST_KILL_AFTER"


def _injected_kill(computed: int) -> None:
    spec = os.environ.get(KILL_SWITCH)
    if not spec:
        return
    n, marker = spec.split(":", 1)
    if computed != int(n):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    log.warning("%s: killing this job after %s computed utterances (test fault injection)", KILL_SWITCH, n)
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)


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
    resume: bool = True,
) -> dict[str, object]:
    """:func:`explain_shard` for Snakemake's scatter item ``"<i>-of-<n>"`` (1-based), with the
    config's occlusion settings and (``resume``) the ``<map>.partial`` folder beside the
    ``<map>.shards`` folder of ``store_path``; writes the shard's one-row timing TSV (shard, cost,
    device, utterances resumed)."""
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
            resume_dir=partial_root(store_path) if resume else None,
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
    resumed = int(timing["resumed"].fillna(0).sum()) if "resumed" in timing else 0  # older shards lack it
    computed = n - resumed
    log.info("%d utterances from %d shards (%d resumed); %.2f s per computed utterance", n, len(timing),
             resumed, timing["seconds"].sum() / max(computed, 1))  # fmt: skip
    return n
