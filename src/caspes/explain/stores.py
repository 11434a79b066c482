"""Saliency stores: SM^X and SM^H per utterance, one member each (:mod:`caspes.core.zipstore`).

Fields of a record:

* ``saliency``: float16 map divided by its row maximum, (I, T, F) for SM^X or (I, T') for SM^H;
* ``scale``: float32 (I,) row maxima, so that the raw map is ``saliency * scale[:, None, ...]``
  (per-row scaling keeps ~3 significant digits of KL values of any magnitude);
* ``counts``: int32 (T, F) or (T',), how many masks occluded each element;
* ``decoder_input``, ``target_ids``, ``pieces``, ``roles``: the rows, copied from the
  cross-attention store of the same hypotheses (:mod:`caspes.decode.xattn`), so that row ``i`` of
  SM, of CA and of the hypothesis always agree;
* ``kind`` (``"input"`` / ``"encoder"``), ``n_masks``, ``p``, ``seed``: how it was made;
* ``halves`` (optional): float16 (2, I, T, F) or (2, I, T'), the map estimated from each half of
  the masks (:func:`caspes.explain.spes.mask_half`), divided by the same row maxima as
  ``saliency``: what the split-half reliability of the map is computed from.  Stores written
  before it existed have none (their reliability is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caspes.core.zipstore import RecordArchive, RecordArchiveWriter

__all__ = ["SaliencyRecord", "SaliencyStoreWriter", "SaliencyStore"]

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
    "halves",
)

_OPTIONAL = ("halves",)


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
    halves: np.ndarray | None = None


class SaliencyStoreWriter(RecordArchiveWriter):
    """Writer of :class:`SaliencyRecord` s (atomic on close)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _FIELDS, kind="saliency store", optional=_OPTIONAL)

    def add_record(self, r: SaliencyRecord) -> None:
        self.add_raw(r.id, self.encode_record(r))

    def encode_record(self, r: SaliencyRecord) -> bytes:
        """The member :meth:`add_record` writes for ``r`` (float16 map over its row maxima)."""
        sal = np.asarray(r.saliency, dtype=np.float32)
        if r.kind not in KINDS:
            raise ValueError(f"{r.id}: kind must be one of {KINDS}, got {r.kind!r}")
        want = 3 if r.kind == "input" else 2
        if sal.ndim != want or sal.shape[0] != len(r.target_ids):
            raise ValueError(
                f"{r.id}: {r.kind} saliency must be {want}-D with one row per target, got {sal.shape}"
            )
        if np.asarray(r.counts).shape != sal.shape[1:]:
            raise ValueError(f"{r.id}: counts shape {np.shape(r.counts)} does not match saliency {sal.shape}")
        if not np.isfinite(sal).all() or (sal < 0).any():
            raise ValueError(f"{r.id}: saliency must be finite and >= 0")
        scale = sal.reshape(sal.shape[0], -1).max(axis=1)
        safe = np.where(scale > 0, scale, 1.0).reshape((-1,) + (1,) * (sal.ndim - 1))
        extra = {}
        if r.halves is not None:
            halves = np.asarray(r.halves, dtype=np.float32)
            if halves.shape != (2, *sal.shape):
                raise ValueError(f"{r.id}: halves shape {halves.shape} is not (2, *{sal.shape})")
            if not np.isfinite(halves).all() or (halves < 0).any():
                raise ValueError(f"{r.id}: half maps must be finite and >= 0")
            extra["halves"] = (halves / safe[None]).astype(np.float16)
        return self.encode(
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
                **extra,
            },
        )


class SaliencyStore(RecordArchive):
    """Reader: ``store[uid]`` -> :class:`SaliencyRecord` (one utterance decompressed at a time).

    ``halves``: also read the half maps (``record.halves``; None otherwise, and for stores
    without them): only the reliability needs them, and they are twice the size of the map."""

    def __init__(self, path: str | Path, halves: bool = False) -> None:
        super().__init__(path, [f for f in _FIELDS if f not in _OPTIONAL], kind="saliency store")
        self.skip = () if halves else _OPTIONAL

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
            halves=d["halves"].astype(np.float32) * scale[None] if "halves" in d else None,
        )

    def __enter__(self) -> SaliencyStore:
        return self
