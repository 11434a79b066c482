"""Atomic file writes: every output is written to a hidden sibling and moved into place.

A reader (or Snakemake, after a killed job) therefore sees either the previous file or the
complete new one, never a partial one; an exception removes the temporary file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["temporary_sibling", "atomic_path", "atomic_open", "atomic_write_text", "sha256_file"]


def temporary_sibling(path: str | Path) -> Path:
    """``.<name>.<pid>.tmp`` in the folder of ``path`` (created if missing): same file system, so
    :func:`os.replace` is atomic, and one name per process."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` when the block ends without error."""
    tmp = temporary_sibling(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, fsync: bool = False, **kwargs: Any) -> Iterator[IO]:
    """:func:`open` on a temporary sibling that replaces ``path`` on success; ``fsync`` forces the
    data to disk before the move (for checkpoints, which a crash must not leave empty)."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
