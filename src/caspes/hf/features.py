"""A manifest's audio through a Hugging Face model's own feature extractor, into one feature
archive (the same layout as :func:`caspes.features.extract_split`).

Only the real frames are stored (the extractor's attention mask: one frame per hop of real
audio); the model's padding is the adapter's job (:mod:`caspes.hf.adapter`), so that
segmentation, masking, maps, pooling and deletion never see it. The features manifest gains a
``features`` column naming the extractor, and :class:`caspes.features.FeatureReader` returns such
features as stored (no utterance CMVN: Speech2Text's extractor normalises already, Whisper's
log-mel is used as the model was trained).

Whisper's extractor pads the audio with zeros to its window and its padding frames are then the
log-mel floor ``max(x) - 2`` (at least -1.5); each extraction checks that the extractor's own
padding frames (from two frames after the real ones, past the STFT window's reach) equal what
the adapter will pad with, and stops otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from caspes.core.audio import read_audio, resolve_audio_path
from caspes.core.manifest import DataError, read_manifest, write_manifest
from caspes.features import FeatureArchiveWriter
from caspes.hf.adapter import WHISPER_FLOOR
from caspes.hf.card import read_model_card

__all__ = ["load_extractor", "model_features", "extract_model_features"]

log = logging.getLogger(__name__)


def load_extractor(card: dict[str, Any]) -> Any:
    from transformers import AutoFeatureExtractor

    return AutoFeatureExtractor.from_pretrained(
        card["path"], local_files_only=True, trust_remote_code=card["trust_remote_code"]
    )


def model_features(
    extractor: Any, samples: np.ndarray, rate: int, fixed_window: bool, where: str
) -> np.ndarray:
    """(T, F) float32 real frames of one utterance as the model's extractor computes them."""
    if rate != extractor.sampling_rate:
        raise DataError(
            f"{where}: audio at {rate} Hz, the model's feature extractor needs {extractor.sampling_rate} Hz"
        )
    if fixed_window:
        limit = int(extractor.n_samples)
        if samples.shape[0] > limit:
            raise DataError(
                f"{where}: {samples.shape[0] / rate:.2f} s of audio exceeds the model's "
                f"{limit / rate:g} s input window"
            )
    out = extractor(samples, sampling_rate=rate, return_attention_mask=True, return_tensors="np")
    feats = np.asarray(out["input_features"][0], dtype=np.float32)
    mask = np.asarray(out["attention_mask"][0])
    real = int(mask.sum())
    if feats.shape[0] == extractor.feature_size and feats.shape[1] == mask.shape[0]:
        feats = feats.T  # (F, N) -> (N, F)
    if real < 1:
        raise DataError(f"{where}: audio too short for one frame of the model's features")
    if fixed_window:
        tail = feats[real + 2 :]
        expected = max(float(feats[:real].max()) - 2.0, WHISPER_FLOOR)
        if tail.size and not np.allclose(tail, expected, atol=1e-4):
            raise DataError(
                f"{where}: the extractor's padding frames are not its log-mel floor "
                f"({float(tail.min()):.4f}..{float(tail.max()):.4f}, expected {expected:.4f}); "
                "caspes cannot reproduce this model's padding"
            )
    return np.ascontiguousarray(feats[:real])


def extract_model_features(
    card_path: str | Path,
    manifest_path: str | Path,
    archive_path: str | Path,
    features_manifest_path: str | Path,
    progress: bool = True,
) -> int:
    """Every row of a manifest through the card's feature extractor; returns the utterance count."""
    card = read_model_card(card_path)
    extractor = load_extractor(card)
    manifest_path, archive_path = Path(manifest_path), Path(archive_path)
    if archive_path.parent.resolve() != Path(features_manifest_path).parent.resolve():
        raise ValueError("the feature archive and its manifest must be in the same folder")
    rows = read_manifest(manifest_path)
    n_frames: dict[str, int] = {}
    with FeatureArchiveWriter(archive_path) as writer:
        for row in tqdm(
            rows, desc=f"{card['name']} features {manifest_path.name}", disable=not progress, mininterval=5
        ):
            where = f"{manifest_path}:{row['_line']}"
            samples, rate = read_audio(resolve_audio_path(row["audio"], manifest_path))
            feats = model_features(
                extractor, samples.astype(np.float32), rate, bool(card["fixed_window"]), where
            )
            writer.add(row["id"], feats)
            n_frames[row["id"]] = int(feats.shape[0])
    kind = type(extractor).__name__
    out_rows = [
        {**row, "audio": writer.references[row["id"]], "n_frames": n_frames[row["id"]], "features": kind}
        for row in rows
    ]
    columns = (
        [c for c in rows[0].keys() if not c.startswith("_") and c != "features"] + ["features"]
        if rows
        else None
    )
    write_manifest(features_manifest_path, out_rows, columns)
    log.info(
        "%s: %d utterances through %s (%d frames)", manifest_path, len(rows), kind, sum(n_frames.values())
    )
    return len(rows)
