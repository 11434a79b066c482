"""Per-utterance resume of saliency shards: a partial store that survives a killed job.

A shard job (:func:`caspes.explain.shards.explain_shard`) writes every finished utterance's
encoded record to ``<run>/saliency/<map>.partial/<run key>/<id>.<inputs digest>.npz`` (atomically,
forced to disk) before adding it to its shard store.  Snakemake deletes the declared outputs of a
failed job, never this folder beside them, so a rerun (a SLURM resubmission after pre-emption or a
time limit, or the user's next ``snakemake``) takes the finished utterances from it and computes
only the others: the shard store it then writes is byte-identical to an uninterrupted run's.

A cached map is used only when everything that determines it is the same:

* the run key: the kind of map, every :class:`~caspes.explain.spes.OcclusionOptions` field, the
  checkpoint's bytes, the device type (CPU and CUDA maps differ in the last bits), the torch
  version and the source of this package (a code change invalidates every cached map);
* the inputs digest of the utterance: its features, its decoder input (the hypothesis) and, for
  SM^X, its SLIC segmentation.

The folder is shared by all shards of one map whatever their number, so changing
``explain.shards`` recomputes no map either.  Folders of other run keys are removed when a shard
starts, so the folder holds at most one copy of each map (delete ``*.partial`` folders to reclaim
the space: it costs only the resume).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import shutil
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caspes.core.atomic import atomic_open, sha256_file

__all__ = ["PartialStore", "partial_root", "run_key", "inputs_digest", "source_digest"]

log = logging.getLogger(__name__)


def partial_root(shard_store: str | Path) -> Path:
    """``<map>.partial`` beside the ``<map>.shards`` folder of a shard store."""
    shards = Path(shard_store).parent
    name = shards.name[: -len(".shards")] if shards.name.endswith(".shards") else shards.name
    return shards.with_name(f"{name}.partial")


@cache
def source_digest() -> str:
    """SHA-256 of every Python file of the installed ``caspes`` package (names and bytes)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def run_key(kind: str, options: Any, checkpoint: str | Path, device: torch.device) -> str:
    """The 16-hex-digit key of everything shared by the maps of one run (module docstring)."""
    parts = {
        "kind": kind,
        "options": dataclasses.asdict(options),
        "checkpoint": sha256_file(checkpoint),
        "device": torch.device(device).type,
        "torch": torch.__version__,
        "source": source_digest(),
    }
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:16]


def inputs_digest(
    features: np.ndarray, decoder_input: Sequence[int], levels: Sequence[np.ndarray] = ()
) -> str:
    """16 hex digits of one utterance's inputs: features, decoder input, SLIC levels (SM^X)."""
    h = hashlib.sha256()
    for array in (np.asarray(features, dtype=np.float32), np.asarray(decoder_input, dtype=np.int64), *levels):
        a = np.ascontiguousarray(array)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class PartialStore:
    """The finished utterances of one run key (see the module docstring).

    Args:
        root: the ``<map>.partial`` folder.
        key: :func:`run_key` of this run; folders of other keys under ``root`` are removed.
    """

    def __init__(self, root: str | Path, key: str) -> None:
        self.root = Path(root)
        self.folder = self.root / key
        if self.root.is_dir():
            for stale in self.root.iterdir():
                if stale.is_dir() and stale.name != key:
                    log.info("removing %s: maps of other settings, inputs or code", stale)
                    shutil.rmtree(stale, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, uid: str, digest: str) -> Path:
        return self.folder / f"{uid}.{digest}.npz"

    def get(self, uid: str, digest: str) -> bytes | None:
        """The encoded record of ``uid`` finished by an earlier attempt, or None.  A file that is
        not a readable record of ``uid`` (a disk fault) is removed and recomputed."""
        path = self._path(uid, digest)
        if not path.is_file():
            return None
        blob = path.read_bytes()
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                ok = str(z["id"]) == uid
        except Exception:  # noqa: BLE001 - any unreadable file is recomputed
            ok = False
        if not ok:
            log.warning("%s: not a readable record of '%s'; recomputing it", path, uid)
            path.unlink(missing_ok=True)
            return None
        return blob

    def put(self, uid: str, digest: str, blob: bytes) -> None:
        """Keep the encoded record of a finished utterance (atomic, on disk before returning)."""
        with atomic_open(self._path(uid, digest), "wb", fsync=True) as f:
            f.write(blob)
