"""Settings of the SPES runs, kept free of heavy imports (the workflow builds rule params from them
while it parses the Snakefile): :class:`OcclusionOptions` of one occlusion run
(:mod:`caspes.explain.spes`) and :class:`SegmentationOptions` of the SLIC levels
(:mod:`caspes.explain.segment`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OcclusionOptions", "SegmentationOptions"]


@dataclass(frozen=True)
class OcclusionOptions:
    """Settings of one occlusion run.

    Attributes:
        n_masks: mask budget (``N_X`` or ``N_H``); for SM^X split equally over the SLIC levels.
        p: occlusion probability of a segment (SM^X, paper 0.5) or an encoder step (SM^H, 0.7).
        seed: base seed; each utterance uses :func:`utterance_seed` of it and its id.
        batch_size: masks per forward pass; None = automatic (:func:`auto_batch_size`).
        batch_frames: CPU automatic batch bound: ``masks * T <= batch_frames`` (the reference's
            ``--max-tokens``).
        max_batch_size: upper bound of the automatic batch size.
        autocast_bf16: run the model under bf16 autocast (CUDA or CPU; the KL stays fp32): True,
            False or ``"auto"`` (where the device has native bf16,
            :func:`caspes.model.inference.native_bf16`).
    """

    n_masks: int = 20000
    p: float = 0.5
    seed: int = 1
    batch_size: int | None = None
    batch_frames: int = 100_000
    max_batch_size: int = 2048
    autocast_bf16: bool | str = False

    def __post_init__(self) -> None:
        if self.n_masks < 1:
            raise ValueError(f"n_masks must be >= 1, got {self.n_masks}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.batch_frames < 1 or self.max_batch_size < 1:
            raise ValueError("batch_frames and max_batch_size must be >= 1")
        if not isinstance(self.autocast_bf16, bool) and self.autocast_bf16 != "auto":
            raise ValueError(f"autocast_bf16 must be true, false or 'auto', got {self.autocast_bf16!r}")


@dataclass(frozen=True)
class SegmentationOptions:
    """SLIC settings of the SPES input perturbation (defaults: the paper's)."""

    base_segments: tuple[int, ...] = (2000, 2500, 3000)
    threshold_frames: int | None = 750
    reference_frames: int = 500
    compactness: float = 0.1
    sigma: float = 0.0
    max_iter: int = 10

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> SegmentationOptions:
        """The SLIC settings of the config's ``explain.input`` block (its other keys are ignored)."""
        keys = ("base_segments", "threshold_frames", "reference_frames", "compactness", "sigma", "max_iter")
        return cls(**{k: section[k] for k in keys if k in section})

    def asdict(self) -> dict[str, Any]:
        """Plain dict (``base_segments`` as a list), accepted by :meth:`from_config`."""
        return {**dataclasses.asdict(self), "base_segments": list(self.base_segments)}

    def __post_init__(self) -> None:
        base = tuple(int(b) for b in self.base_segments)
        if not base or any(b < 1 for b in base):
            raise ValueError(f"base_segments must be positive integers, got {self.base_segments}")
        object.__setattr__(self, "base_segments", base)
        if self.threshold_frames is not None and self.threshold_frames < 1:
            raise ValueError(f"threshold_frames must be >= 1 or None, got {self.threshold_frames}")
        if self.reference_frames < 1:
            raise ValueError(f"reference_frames must be >= 1, got {self.reference_frames}")
        if self.compactness <= 0 or self.sigma < 0 or self.max_iter < 1:
            raise ValueError("compactness must be > 0, sigma >= 0 and max_iter >= 1")
