"""Multi-level SLIC segmentation of a spectrogram: the patches SPES occludes (SM^X).

Follows ``spec/spes_reference.md`` §1:

* the input is the utterance-CMVN filterbank matrix ``X`` (T, F), rescaled to [0, 1] with one
  global min and max, segmented as a single-channel 2-D image (``channel_axis=None``) with
  ``compactness=0.1`` and ``sigma=0`` (skimage's default sigma is 1: it must be passed);
* per level with base value ``b``: ``n = round(b * min(T, threshold) / reference)`` (0 -> 1), with
  ``b`` in (2000, 2500, 3000), ``threshold = 750`` and ``reference = 500`` frames, i.e. 400, 500 and
  600 patches per second of speech, frozen above 7.5 s;
* SLIC returns only about ``n`` segments; the actual count is whatever it returns.

Labels are stored 0-based (skimage's ``start_label=1`` minus one) as int32 (T, F) arrays, so that
``keep[:, labels]`` indexes a (masks, segments) keep matrix directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from skimage.segmentation import slic
from tqdm import tqdm

from caspes.core.zipstore import RecordArchive, RecordArchiveWriter
from caspes.explain.options import SegmentationOptions
from caspes.explain.selection import select_ids
from caspes.features import FeatureReader

__all__ = [
    "segment_manifest",
    "SegmentationOptions",
    "n_segments",
    "rescale_unit",
    "segment_levels",
    "SegmentationStore",
    "write_segmentations",
]

log = logging.getLogger(__name__)

_FIELDS = ("labels", "n_segments", "requested")


def n_segments(frames: int, options: SegmentationOptions = SegmentationOptions()) -> list[int]:
    """Requested segment count per level for an utterance of ``frames`` frames (spec §1)."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    t_eff = frames if options.threshold_frames is None else min(frames, options.threshold_frames)
    counts = []
    for b in options.base_segments:
        n = round(b * t_eff / options.reference_frames)  # Python round: half to even, as the reference
        counts.append(max(int(n), 1))
    return counts


def rescale_unit(features: np.ndarray) -> np.ndarray:
    """(T, F) -> float64 copy rescaled to [0, 1] with the global min and max (constant -> zeros)."""
    x = np.asarray(features, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def segment_levels(
    features: np.ndarray, options: SegmentationOptions = SegmentationOptions()
) -> tuple[list[np.ndarray], list[int]]:
    """SLIC segmentations of one CMVN-normalised (T, F) matrix, one per level.

    Returns:
        (labels, requested): per level an int32 (T, F) array of 0-based segment labels covering
        ``0 .. S_l - 1`` without gaps, and the requested counts (:func:`n_segments`).
    """

    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"features must be a non-empty (T, F) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf")
    image = rescale_unit(x)
    requested = n_segments(x.shape[0], options)
    levels = []
    for n in requested:
        labels = slic(
            image,
            n_segments=n,
            compactness=options.compactness,
            sigma=options.sigma,
            max_num_iter=options.max_iter,
            channel_axis=None,
            start_label=1,
            enforce_connectivity=True,
        )
        labels = labels.astype(np.int64) - 1
        # make labels dense (0..S-1), whatever skimage leaves unused
        _, dense = np.unique(labels, return_inverse=True)
        levels.append(dense.reshape(labels.shape).astype(np.int32))
    return levels, requested


class SegmentationStore(RecordArchive):
    """Cached segmentations: :meth:`levels` gives an utterance's int32 (T, F) label arrays, one per
    level; ``store[uid]`` the raw record (``labels`` (L, T, F), ``n_segments``, ``requested``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _FIELDS, kind="segmentation store")

    def levels(self, uid: str) -> list[np.ndarray]:
        data = super().__getitem__(uid)
        return [lab.astype(np.int32) for lab in data["labels"]]


def write_segmentations(
    path: str | Path,
    features: Iterable[tuple[str, np.ndarray]],
    options: SegmentationOptions = SegmentationOptions(),
    progress: bool = False,
    total: int | None = None,
) -> dict[str, float]:
    """Segment every (uid, CMVN features) pair and store the labels (int16 when they fit).

    Returns summary figures: utterances, mean requested and obtained segments per level.
    """

    requested_sum = np.zeros(len(options.base_segments))
    obtained_sum = np.zeros(len(options.base_segments))
    count = 0
    with RecordArchiveWriter(path, _FIELDS, kind="segmentation store") as writer:
        for uid, feats in tqdm(features, desc="SLIC", total=total, disable=not progress, mininterval=5):
            levels, requested = segment_levels(feats, options)
            stacked = np.stack(levels)
            obtained = [int(lab.max()) + 1 for lab in levels]
            dtype = np.int16 if max(obtained) <= np.iinfo(np.int16).max else np.int32
            writer.add(
                uid,
                {
                    "labels": stacked.astype(dtype),
                    "n_segments": np.asarray(obtained, dtype=np.int32),
                    "requested": np.asarray(requested, dtype=np.int32),
                },
            )
            requested_sum += requested
            obtained_sum += obtained
            count += 1
    n = max(count, 1)
    summary = {"utterances": count}
    for k in range(len(options.base_segments)):
        summary[f"requested_level{k}"] = round(float(requested_sum[k] / n), 1)
        summary[f"segments_level{k}"] = round(float(obtained_sum[k] / n), 1)
    return summary


def segment_manifest(
    manifest: str | Path, out_path: str | Path, options: Mapping[str, Any], max_utterances: int | None
) -> dict[str, float]:
    """Segment the explained utterances of a feature manifest (:func:`select_ids`; utterance CMVN
    applied on load, as decoded) with the config's ``explain.segmentation`` settings."""
    options = SegmentationOptions.from_config(options)
    reader = FeatureReader(manifest)
    ids = select_ids([r["id"] for r in reader.rows], max_utterances)
    log.info("segmenting %d of %d utterances with %s", len(ids), len(reader), options)
    summary = write_segmentations(
        out_path, ((uid, reader[uid]) for uid in ids), options, progress=True, total=len(ids)
    )
    log.info("done: %s", summary)
    return summary
