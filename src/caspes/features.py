"""Log-mel filterbank features (fairseq-S2T's recipe) and utterance CMVN.

Features are 80-dim Kaldi fbank, 25 ms window, 10 ms shift, on the waveform scaled to 16-bit
range (fairseq multiplies [-1, 1] samples by 2**15 before ``torchaudio.compliance.kaldi.fbank``).
They are stored raw; utterance CMVN is applied when they are loaded (spec §6), so that SPES
masking, SLIC and deletion all act on the normalised matrix.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from caspes.core.audio import is_archive_reference, read_audio, resolve_audio_path
from caspes.core.manifest import DataError, read_manifest, write_manifest
from caspes.core.zipstore import AtomicZipWriter, local_data_offset, read_archive_array, read_npy

__all__ = [
    "FbankOptions",
    "fbank",
    "utterance_cmvn",
    "load_source_features",
    "extract_split",
    "FeatureReader",
    "FeatureArchiveWriter",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FbankOptions:
    """Kaldi fbank settings; defaults are fairseq-S2T's (and torchaudio's) for 16 kHz speech."""

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = 16000


def fbank(samples: np.ndarray, sample_rate: int, options: FbankOptions = FbankOptions()) -> np.ndarray:
    """Log-mel fbank of float samples in [-1, 1], shape (n_samples,) → (T, num_mel_bins) float32.

    Audio at another rate is resampled to ``options.sample_rate`` first.
    """

    wav = torch.as_tensor(np.asarray(samples, dtype=np.float32))
    if wav.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {tuple(wav.shape)}")
    if sample_rate != options.sample_rate:
        wav = torchaudio.functional.resample(wav, sample_rate, options.sample_rate)
    feats = torchaudio.compliance.kaldi.fbank(
        (wav * 32768.0).unsqueeze(0),
        num_mel_bins=options.num_mel_bins,
        frame_length=options.frame_length_ms,
        frame_shift=options.frame_shift_ms,
        sample_frequency=options.sample_rate,
        dither=0.0,
    )
    return feats.numpy().astype(np.float32, copy=False)


def utterance_cmvn(features: np.ndarray | torch.Tensor, eps: float = 1e-10):
    """Per-bin mean/variance normalisation over time (fairseq's ``utterance_cmvn``).

    (T, F) → (T, F): ``(x - mean_t) / sqrt(max(var_t, eps))`` with the population variance.
    Works on NumPy arrays and torch tensors alike and returns the same kind.
    """
    if isinstance(features, torch.Tensor):
        mean = features.mean(dim=0, keepdim=True)
        var = ((features - mean) ** 2).mean(dim=0, keepdim=True)
        return (features - mean) / torch.sqrt(torch.clamp(var, min=eps))
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=0, keepdims=True)
    return ((x - mean) / np.sqrt(np.maximum(var, eps))).astype(np.float32)


def load_source_features(
    row: dict[str, str], manifest_path: str | Path, options: FbankOptions = FbankOptions()
) -> np.ndarray:
    """Raw fbank (T, F) for one manifest row: computed from audio, or read from stored features
    (``.npy`` or a zip reference, as fairseq-prepared manifests hold them)."""
    audio = row["audio"]
    where = f"{manifest_path}:{row.get('_line', '?')}"
    if is_archive_reference(audio):
        feats = read_archive_array(audio, manifest_path)
    else:
        path = resolve_audio_path(audio, manifest_path)
        if path.suffix == ".npy":
            feats = read_npy(path)
        else:
            samples, rate = read_audio(path)
            return fbank(samples, rate, options)
    if feats.ndim != 2 or feats.shape[1] != options.num_mel_bins:
        raise DataError(
            f"{where}: stored features have shape {feats.shape}, expected (T, {options.num_mel_bins})"
        )
    return feats.astype(np.float32, copy=False)


def extract_split(
    manifest_path: str | Path,
    archive_path: str | Path,
    features_manifest_path: str | Path,
    options: FbankOptions = FbankOptions(),
    progress: bool = True,
) -> int:
    """Compute fbank for every row of a manifest into one feature archive.

    Writes ``archive_path`` (zip of ``<id>.npy``) and ``features_manifest_path``: the same rows with
    ``audio`` pointing into the archive and ``n_frames`` set to the real frame count. Both files sit
    in the same folder so the references stay relative. Returns the number of utterances.
    """

    manifest_path = Path(manifest_path)
    archive_path = Path(archive_path)
    features_manifest_path = Path(features_manifest_path)
    if archive_path.parent.resolve() != features_manifest_path.parent.resolve():
        raise ValueError("the feature archive and its manifest must be in the same folder")
    rows = read_manifest(manifest_path)
    n_frames: dict[str, int] = {}
    with FeatureArchiveWriter(archive_path) as writer:
        for row in tqdm(rows, desc=f"fbank {manifest_path.name}", disable=not progress, mininterval=5):
            feats = load_source_features(row, manifest_path, options)
            if feats.shape[0] == 0:
                raise DataError(f"{manifest_path}:{row['_line']}: audio too short for one fbank frame")
            writer.add(row["id"], feats)
            n_frames[row["id"]] = int(feats.shape[0])
    out_rows = [
        {**row, "audio": writer.references[row["id"]], "n_frames": n_frames[row["id"]]} for row in rows
    ]
    columns = [c for c in rows[0].keys() if not c.startswith("_")] if rows else None
    write_manifest(features_manifest_path, out_rows, columns)
    total = sum(n_frames.values())
    log.info("%s: %d utterances, %d frames (%.2f h)", manifest_path, len(rows), total, total / 360000)
    return len(rows)


class FeatureReader:
    """Random access to the features of one split, one utterance at a time.

    ``reader[uid]`` returns the utterance-CMVN-normalised (T, F) float32 array (``cmvn=False`` for
    the raw fbank); ``reader.rows`` are the manifest rows in file order. A manifest with a
    ``features`` column holds a model's own features (:mod:`caspes.hf.features`): they are returned
    as stored unless ``cmvn=True`` is asked for explicitly.
    """

    def __init__(self, features_manifest_path: str | Path, cmvn: bool | None = None) -> None:
        self.path = Path(features_manifest_path)
        self.rows = read_manifest(self.path)
        self._by_id = {r["id"]: r for r in self.rows}
        self.model_features = bool(self.rows) and "features" in self.rows[0]
        self.cmvn = (not self.model_features) if cmvn is None else cmvn

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, uid: str) -> bool:
        return uid in self._by_id

    def __getitem__(self, uid: str) -> np.ndarray:
        try:
            row = self._by_id[uid]
        except KeyError:
            raise KeyError(f"{self.path}: no utterance '{uid}'") from None
        feats = read_archive_array(row["audio"], self.path)
        return utterance_cmvn(feats) if self.cmvn else feats


class FeatureArchiveWriter(AtomicZipWriter):
    """Write (id, array) pairs into an uncompressed zip of ``.npy`` files.

    Use as a context manager; after closing, :attr:`references` maps each id to its fairseq
    reference ``"<zip name>:<offset>:<length>"`` (the zip's file name only, relative to the
    manifest that sits beside it).
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self._names: dict[str, str] = {}
        self.references: dict[str, str] = {}

    def add(self, uid: str, array: np.ndarray) -> None:
        if uid in self._names:
            raise DataError(f"{self.path}: id '{uid}' written twice")
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(array, dtype=np.float32))
        name = f"{uid}.npy"
        self._write_member(name, buf.getvalue())
        self._names[uid] = name

    def _finish(self) -> None:
        with open(self._tmp, "rb") as f, zipfile.ZipFile(self._tmp) as zf:
            for info in zf.infolist():
                f.seek(info.header_offset)
                offset = local_data_offset(info.header_offset, f.read(30))
                uid = info.filename[: -len(".npy")]
                self.references[uid] = f"{self.path.name}:{offset}:{info.file_size}"
