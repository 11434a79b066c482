"""Audio files: 16 kHz mono wav read/write through soundfile, durations and fbank frame counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from caspes.core.manifest import DataError

__all__ = [
    "is_archive_reference",
    "resolve_audio_path",
    "read_audio",
    "audio_duration",
    "write_audio",
    "n_frames_for_duration",
]


def _soundfile():
    """soundfile, imported when audio is read or written: everything that only reads features
    and stores (saliency, the GPU checks) runs without it."""
    import soundfile

    return soundfile


def is_archive_reference(audio: str) -> bool:
    """True for fairseq's ``<file.zip>:<offset>:<length>`` form."""
    parts = audio.rsplit(":", 2)
    return len(parts) == 3 and parts[0].endswith(".zip") and parts[1].isdigit() and parts[2].isdigit()


def resolve_audio_path(audio: str, manifest_path: str | Path) -> Path:
    """Path of an ``audio`` entry (file part only for archive references), relative to the manifest."""
    file_part = audio.rsplit(":", 2)[0] if is_archive_reference(audio) else audio
    p = Path(file_part)
    return p if p.is_absolute() else Path(manifest_path).parent / p


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 mono in [-1, 1] (channels averaged); returns (samples, rate)."""

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    sf = _soundfile()  # outside the try: a missing package is not an unreadable file
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError
        raise DataError(f"{path}: unreadable audio ({exc})") from exc
    return data.mean(axis=1).astype(np.float32, copy=False), int(rate)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding); DataError if unreadable."""

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    sf = _soundfile()
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise DataError(f"{path}: unreadable audio ({exc})") from exc
    if info.samplerate <= 0:
        raise DataError(f"{path}: unreadable audio (sample rate {info.samplerate})")
    return info.frames / info.samplerate


def write_audio(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV (clipped)."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _soundfile().write(
        str(path), np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), rate, subtype="PCM_16"
    )


def n_frames_for_duration(duration_s: float, window_ms: float = 25.0, shift_ms: float = 10.0) -> int:
    """Frame count the fairseq-S2T preparation scripts write: ``int(1 + (ms - 25) / 10)``, at least 0."""
    ms = duration_s * 1000.0
    if ms < window_ms:
        return 0
    return int(1 + (ms - window_ms) / shift_ms)
