"""SpecAugment on padded training batches."""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from caspes.train.config import TrainConfig

__all__ = ["spec_augment"]


# =========================================================================== SpecAugment
def spec_augment(features: Tensor, lengths: Tensor, config: TrainConfig, rng: np.random.Generator) -> Tensor:
    """SpecAugment (fairseq ``specaugment`` transform) on a padded batch; returns a new tensor.

    Per utterance of ``L`` valid frames: ``specaug_freq_masks`` times, a band of
    ``f ~ U{0..F}`` bins starting at ``f0 ~ U{0..n_mels - f}`` is set to 0;
    ``specaug_time_masks`` times, ``t ~ U{0..min(T, floor(p * L))}`` frames starting at
    ``t0 ~ U{0..L - t}`` are set to 0.  Padding is left as it is.

    Args:
        features: (B, T, n_mels) float (after CMVN).
        lengths: (B,) valid frames.
        config: the ``specaug_*`` fields are used (``config.specaugment`` is not checked).
        rng: the random source (the training loop seeds one per step).
    """
    out = features.clone()
    n_mels = out.size(-1)
    width_f = min(config.specaug_freq_width, n_mels)
    for b, length in enumerate(lengths.tolist()):
        for _ in range(config.specaug_freq_masks):
            f = int(rng.integers(0, width_f + 1))
            f0 = int(rng.integers(0, n_mels - f + 1))
            out[b, :length, f0 : f0 + f] = 0.0
        cap = min(config.specaug_time_width, math.floor(config.specaug_time_max_fraction * length))
        for _ in range(config.specaug_time_masks):
            t = int(rng.integers(0, cap + 1))
            t0 = int(rng.integers(0, length - t + 1))
            out[b, t0 : t0 + t, :] = 0.0
    return out
