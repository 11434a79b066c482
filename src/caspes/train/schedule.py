"""The learning-rate schedule of :class:`~caspes.train.config.TrainConfig` (kept apart from the
settings, which the workflow imports while it parses the Snakefile, because it needs torch)."""

from __future__ import annotations

import math

import torch

from caspes.train.config import TrainConfig

__all__ = ["lr_at_step", "make_scheduler"]


def lr_at_step(step: int, config: TrainConfig) -> float:
    """Learning rate of the ``step``-th update (1-based).

    ``noam``: ``peak_lr * step / warmup`` up to ``warmup_steps`` (peak there), then
    ``peak_lr * sqrt(warmup / step)``.  ``constant``: ``peak_lr``.
    """
    if config.lr_schedule == "constant":
        return config.peak_lr
    step = max(step, 1)
    warmup = config.warmup_steps
    return config.peak_lr * min(step / warmup, math.sqrt(warmup / step))


class _LrFactor:
    """LambdaLR factor: scheduler epoch ``e`` (0-based) is update ``e + 1``.

    Holds plain values only, so the scheduler's state dict (which stores this object's
    ``__dict__``) loads with ``weights_only=True``.
    """

    def __init__(self, config: TrainConfig) -> None:
        self.lr_schedule = config.lr_schedule
        self.peak_lr = float(config.peak_lr)
        self.warmup_steps = int(config.warmup_steps)

    def __call__(self, epoch: int) -> float:
        config = TrainConfig(
            lr_schedule=self.lr_schedule, peak_lr=self.peak_lr, warmup_steps=self.warmup_steps
        )
        return lr_at_step(epoch + 1, config) / self.peak_lr


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _LrFactor(config))
