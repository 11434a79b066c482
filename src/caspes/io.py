"""File formats: fairseq-S2T manifests, audio, skipped-utterance reports, feature archives.

Every reader and writer of the project's on-disk formats lives here, so that the rest of the
package handles plain Python / NumPy objects.

Manifests
    Tab-separated, one header line, no quoting (``csv.QUOTE_NONE``), as fairseq-S2T reads them.
    Columns: ``id audio n_frames src_text tgt_text speaker src_lang tgt_lang`` and, where known,
    ``word_times`` (one ``start:end`` pair in seconds per whitespace word of ``src_text``).
    ``audio`` is a path relative to the manifest's folder (or absolute), or a fairseq reference
    ``<archive.zip>:<byte offset>:<byte length>`` into an uncompressed zip of ``.npy`` arrays.

Feature archives
    An uncompressed zip of ``<id>.npy`` float32 arrays of shape (T, F), like fairseq's
    ``fbank80.zip``. Each array can be read alone from its byte range (memory-mapped), so one
    utterance is loaded at a time.
"""

from __future__ import annotations

import csv
import io
import mmap
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "MANIFEST_COLUMNS",
    "REQUIRED_COLUMNS",
    "SKIPPED_COLUMNS",
    "Skip",
    "read_manifest",
    "write_manifest",
    "write_skipped",
    "read_skipped",
    "read_audio",
    "write_audio",
    "audio_duration",
    "resolve_audio_path",
    "is_archive_reference",
    "n_frames_for_duration",
    "format_word_times",
    "parse_word_times",
    "FeatureArchiveWriter",
    "read_archive_array",
    "read_npy",
]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id",
    "audio",
    "n_frames",
    "src_text",
    "tgt_text",
    "speaker",
    "src_lang",
    "tgt_lang",
)
"""Our manifest columns (fairseq-S2T's plus src_lang/tgt_lang); ``word_times`` is appended when known."""

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "audio", "n_frames", "tgt_text")
"""What fairseq-S2T itself requires of a manifest."""

SKIPPED_COLUMNS: tuple[str, ...] = ("id", "source", "reason", "detail")


class DataError(ValueError):
    """Bad input data; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Skip:
    """One utterance left out of a manifest, with where it came from and why."""

    id: str
    source: str  # "file:line" of the row that described it
    reason: str  # short machine-readable reason, e.g. "missing_audio", "too_long", "empty_text"
    detail: str = ""


# --------------------------------------------------------------------------- manifests


def _check_field(value: str, column: str, path: Path | str, line: int) -> str:
    if any(ch in value for ch in "\t\n\r"):
        raise DataError(f"{path}:{line}: column '{column}' contains a tab or newline: {value!r}")
    return value


def read_manifest(path: str | Path, required: Sequence[str] = REQUIRED_COLUMNS) -> list[dict[str, str]]:
    """Read a fairseq-S2T TSV manifest.

    Each returned row also carries ``_line`` (1-based line number in the file) so that later
    checks can name the exact line. Raises DataError for a missing file, a missing required
    column, a row with the wrong number of fields or a duplicated id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty manifest (no header line)") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}:1: missing required column(s) {missing}; header is {header}")
        for line_no, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{path}:{line_no}: expected {len(header)} tab-separated fields, got {len(fields)}"
                )
            row = dict(zip(header, fields))
            uid = row["id"]
            if uid in seen:
                raise DataError(f"{path}:{line_no}: duplicate id '{uid}' (first on line {seen[uid]})")
            seen[uid] = line_no
            row["_line"] = str(line_no)
            rows.append(row)
    return rows


def write_manifest(
    path: str | Path, rows: Iterable[dict[str, object]], columns: Sequence[str] | None = None
) -> int:
    """Write rows as a fairseq-S2T TSV manifest; returns the number of rows written.

    ``columns`` defaults to MANIFEST_COLUMNS plus ``word_times`` if any row has it. Keys starting
    with ``_`` are internal and never written.
    """
    path = Path(path)
    rows = list(rows)
    if columns is None:
        columns = list(MANIFEST_COLUMNS)
        if any(r.get("word_times") for r in rows):
            columns.append("word_times")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n", escapechar=None)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            writer.writerow(
                [_check_field(str(row.get(c, "")), c, path, i + 2) for c in columns]
            )
    tmp.replace(path)
    return len(rows)


def write_skipped(path: str | Path, skips: Iterable[Skip]) -> int:
    """Write the skipped-utterance report (always written, header only when nothing was skipped)."""
    rows = [
        {"id": s.id, "source": s.source, "reason": s.reason, "detail": s.detail.replace("\t", " ")}
        for s in skips
    ]
    return write_manifest(path, rows, SKIPPED_COLUMNS)


def read_skipped(path: str | Path) -> list[Skip]:
    return [
        Skip(r["id"], r["source"], r["reason"], r["detail"])
        for r in read_manifest(path, required=SKIPPED_COLUMNS)
    ]


# --------------------------------------------------------------------------- word times


def format_word_times(times: Iterable[tuple[float, float]]) -> str:
    """``[(0.12, 0.4), ...]`` → ``"0.120:0.400 ..."`` (millisecond precision)."""
    return " ".join(f"{s:.3f}:{e:.3f}" for s, e in times)


def parse_word_times(value: str, where: str = "") -> list[tuple[float, float]]:
    """Inverse of :func:`format_word_times`; DataError (naming ``where``) on a malformed pair."""
    out: list[tuple[float, float]] = []
    for item in value.split():
        try:
            start, end = item.split(":")
            out.append((float(start), float(end)))
        except ValueError:
            raise DataError(f"{where}: malformed word time {item!r} (expected start:end)") from None
    return out


# --------------------------------------------------------------------------- audio


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
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises its own LibsndfileError / RuntimeError
        raise DataError(f"{path}: unreadable audio ({exc})") from exc
    return data.mean(axis=1).astype(np.float32, copy=False), int(rate)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding); DataError if unreadable."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise DataError(f"{path}: unreadable audio ({exc})") from exc
    if info.samplerate <= 0:
        raise DataError(f"{path}: unreadable audio (sample rate {info.samplerate})")
    return info.frames / info.samplerate


def write_audio(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM WAV (clipped)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0), rate, subtype="PCM_16")


def n_frames_for_duration(duration_s: float, window_ms: float = 25.0, shift_ms: float = 10.0) -> int:
    """Frame count the fairseq-S2T preparation scripts write: ``int(1 + (ms - 25) / 10)``, at least 0."""
    ms = duration_s * 1000.0
    if ms < window_ms:
        return 0
    return int(1 + (ms - window_ms) / shift_ms)


# --------------------------------------------------------------------------- feature archives


class AtomicZipWriter:
    """An uncompressed zip written to ``<path>.tmp`` and moved to ``path`` when closed without
    error (use as a context manager); an exception leaves no file behind.  Members get a fixed
    timestamp, so the same content gives a byte-identical archive."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def _write_member(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        self._zip.writestr(info, data)

    def _finish(self) -> None:
        """Hook run on the closed temporary file before it is moved into place."""

    def close(self) -> None:
        self._zip.close()
        self._finish()
        self._tmp.replace(self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._zip.close()
            self._tmp.unlink(missing_ok=True)


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
                header = f.read(30)
                name_len = int.from_bytes(header[26:28], "little")
                extra_len = int.from_bytes(header[28:30], "little")
                offset = info.header_offset + 30 + name_len + extra_len
                uid = info.filename[: -len(".npy")]
                self.references[uid] = f"{self.path.name}:{offset}:{info.file_size}"


def read_npy(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: feature file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{path}: unreadable .npy ({exc})") from exc


def read_archive_array(reference: str, manifest_path: str | Path) -> np.ndarray:
    """Load one array from a ``<zip>:<offset>:<length>`` reference (zip relative to the manifest)."""
    zip_path = resolve_audio_path(reference, manifest_path)
    _, offset_s, length_s = reference.rsplit(":", 2)
    offset, length = int(offset_s), int(length_s)
    if not zip_path.is_file():
        raise DataError(f"{zip_path}: feature archive not found (referenced from {manifest_path})")
    with open(zip_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if offset + length > len(mm):
            raise DataError(f"{zip_path}: byte range {offset}:{length} lies outside the archive")
        blob = mm[offset : offset + length]
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:
        raise DataError(f"{zip_path}:{offset}:{length}: not a .npy array ({exc})") from exc


def iter_archive(path: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """All (id, array) pairs of a feature archive, in stored order."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            with zf.open(info) as f:
                yield info.filename[: -len(".npy")], np.load(io.BytesIO(f.read()), allow_pickle=False)
