"""Uncompressed zip stores, written atomically and byte-identical for identical contents.

Two readers, one per access pattern: :class:`RecordArchive` reads one utterance's record
(``<id>.npz``) by id, and is the base of every store of the study (segmentations, cross-attention,
saliency); :func:`read_archive_array` reads one ``.npy`` member through a memory map from the
``<zip>:<offset>:<length>`` reference that a fairseq-S2T feature manifest holds.

The writer is our own rather than :mod:`zipfile` defaults or :func:`numpy.savez`: members are
stored uncompressed with a fixed timestamp and in the order given, so the same content gives a
byte-identical file (results can be compared with a checksum) and a feature's byte range can be
read without opening the archive's index.
"""

from __future__ import annotations

import io
import mmap
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from caspes.core.atomic import temporary_sibling
from caspes.core.audio import resolve_audio_path
from caspes.core.manifest import DataError

__all__ = [
    "read_npy",
    "read_archive_array",
    "check_uid",
    "npz_bytes",
    "local_data_offset",
    "RecordArchiveWriter",
    "RecordArchive",
]


class AtomicZipWriter:
    """An uncompressed zip written to a temporary sibling and moved to ``path`` when closed without
    error (use as a context manager); an exception leaves no file behind.  Members get a fixed
    timestamp, so the same content gives a byte-identical archive."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._tmp = temporary_sibling(self.path)
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
        name, crc = _local_header(mm, offset, zip_path)
    if crc is not None and zlib.crc32(blob) != crc:
        raise DataError(
            f"{zip_path}: member {name!r} (bytes {offset}:{length}) is corrupt: its CRC-32 does not match "
            "the archive's; recompute the features (delete the archive and rerun)"
        )
    try:
        return np.load(io.BytesIO(blob), allow_pickle=False)
    except Exception as exc:
        raise DataError(
            f"{zip_path}: member {name!r} (bytes {offset}:{length}) is not a .npy array ({exc})"
        ) from exc


_LOCAL_HEADER = b"PK\x03\x04"


def _local_header(mm: mmap.mmap, offset: int, zip_path: Path) -> tuple[str, int | None]:
    """Name and CRC-32 of the stored zip member whose data starts at ``offset`` (None: the
    archive keeps the CRC in a data descriptor after the data instead, so it is not checked).

    The local file header (30 bytes, then the name and an extra field) ends where the data
    starts; a reference that does not start right after one is not a member of the archive.
    """
    lo = max(0, offset - 30 - 0xFFFF - 0xFFFF)
    start = mm.rfind(_LOCAL_HEADER, lo, max(offset - 26, 0))
    while start >= 0:
        header = mm[start : start + 30]
        if local_data_offset(start, header) == offset:
            name_len = int.from_bytes(header[26:28], "little")
            name = mm[start + 30 : start + 30 + name_len].decode("utf-8", "replace")
            flags = int.from_bytes(header[6:8], "little")
            return name, None if flags & 0x08 else int.from_bytes(header[14:18], "little")
        start = mm.rfind(_LOCAL_HEADER, lo, start)
    raise DataError(f"{zip_path}: byte offset {offset} is not the start of a member of the archive")


def local_data_offset(header_offset: int, header: bytes) -> int:
    """Where a member's data starts, from its 30-byte local file header at ``header_offset``
    (the header, then the name and the extra field)."""
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    return header_offset + 30 + name_len + extra_len


_DATE = (1980, 1, 1, 0, 0, 0)


def check_uid(uid: object) -> str:
    """An utterance id usable as a member name (non-empty, no path separators, tabs or newlines)."""
    if not isinstance(uid, str) or not uid or any(c in uid for c in "/\\\n\t"):
        raise ValueError(f"bad utterance id {uid!r}")
    return uid


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array, order="C"), allow_pickle=False)  # keeps 0-d arrays 0-d
    return buf.getvalue()


def npz_bytes(arrays: Mapping[str, np.ndarray], order: Sequence[str]) -> bytes:
    """A deterministic ``.npz`` of ``arrays`` (entries in ``order``, fixed timestamps, deflated)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in order:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, _npy_bytes(arrays[name]))
    return buf.getvalue()


class RecordArchiveWriter(AtomicZipWriter):
    """Write records (dicts of arrays with the fields ``fields``) one utterance at a time.

    The file appears atomically when the writer is closed without error (use it as a context
    manager); an exception leaves no partial file behind.

    Args:
        path: archive to write.
        fields: the schema, without ``id`` (added first automatically).
        kind: what the archive holds, for error messages (e.g. ``"saliency store"``).
    """

    def __init__(
        self,
        path: str | Path,
        fields: Sequence[str],
        kind: str = "record archive",
        optional: Sequence[str] = (),
    ) -> None:
        super().__init__(path)
        self.fields = ("id", *[f for f in fields if f != "id"])
        self.optional = tuple(f for f in optional if f in self.fields)
        self.kind = kind
        self.ids: list[str] = []
        self._seen: set[str] = set()

    def add(self, uid: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Add the record of utterance ``uid`` (``arrays`` has exactly the schema's fields)."""
        self.add_raw(uid, self.encode(uid, arrays))

    def encode(self, uid: str, arrays: Mapping[str, np.ndarray]) -> bytes:
        """The member :meth:`add` writes for ``uid`` (``arrays`` has the schema's fields; the
        optional ones may be left out)."""
        check_uid(uid)
        missing = [f for f in self.fields[1:] if f not in arrays and f not in self.optional]
        extra = sorted(set(arrays) - set(self.fields))
        if missing or extra:
            raise ValueError(f"{self.path}: record '{uid}' lacks fields {missing} / has unknown {extra}")
        record = {"id": np.array(uid, dtype=np.str_), **{k: np.asarray(v) for k, v in arrays.items()}}
        return npz_bytes(record, [f for f in self.fields if f in record])

    def add_raw(self, uid: str, blob: bytes) -> None:
        """Add an already encoded member (used to concatenate shards without re-encoding)."""
        check_uid(uid)
        if uid in self._seen:
            raise DataError(f"{self.path}: id '{uid}' written twice")
        self._write_member(f"{uid}.npz", blob)
        self._seen.add(uid)
        self.ids.append(uid)


class RecordArchive(Mapping[str, dict[str, np.ndarray]]):
    """Read an archive one utterance at a time: ``archive[uid]`` -> dict field -> array.

    Args:
        path: the archive.
        fields: fields every record must have (``id`` is always checked).
        kind: what the archive holds, for error messages.
    """

    def __init__(self, path: str | Path, fields: Sequence[str] = (), kind: str = "record archive") -> None:
        self.path = Path(path)
        self.kind = kind
        self.fields = ("id", *[f for f in fields if f != "id"])
        self.skip: tuple[str, ...] = ()  # fields not decompressed when a record is read
        if not self.path.is_file():
            raise DataError(f"{self.path}: {kind} not found")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{self.path}: not a {kind} ({exc})") from exc
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            if not info.filename.endswith(".npz"):
                raise DataError(f"{self.path}: unexpected member {info.filename!r}")
            self._members[info.filename[: -len(".npz")]] = info

    @property
    def ids(self) -> list[str]:
        """Utterance ids in the order written."""
        return list(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __contains__(self, uid: object) -> bool:
        return uid in self._members

    def raw(self, uid: str) -> bytes:
        """The encoded member of ``uid`` (see :meth:`RecordArchiveWriter.add_raw`); its CRC-32 is
        checked, and a corrupt member is a DataError naming the archive and the member."""
        info = self._members[uid]  # KeyError for an unknown id
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise DataError(
                f"{self.path}: member {info.filename!r} of this {self.kind} is corrupt ({exc})"
            ) from exc

    def __getitem__(self, uid: str) -> dict[str, np.ndarray]:
        blob = self.raw(uid)  # KeyError for an unknown id
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                data = {name: z[name] for name in z.files if name not in self.skip}
        except Exception as exc:
            raise DataError(
                f"{self.path}: member '{uid}.npz' of this {self.kind} is unreadable ({exc})"
            ) from exc
        missing = [f for f in self.fields if f not in data]
        if missing or str(data["id"]) != uid:
            raise DataError(f"{self.path}: record '{uid}' is inconsistent (missing fields {missing})")
        return data

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> RecordArchive:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
