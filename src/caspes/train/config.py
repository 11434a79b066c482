"""Training settings of one stage and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SPECAUGMENT_POLICIES",
    "RUNTIME_FIELDS",
    "TrainConfig",
    "stage_settings",
    "split_runtime",
]

#: fairseq's SpecAugment policies (Park et al. 2019), as ``TrainConfig`` fields.
SPECAUGMENT_POLICIES: dict[str, dict[str, Any]] = {
    "lb": dict(
        specaug_freq_masks=1,
        specaug_freq_width=27,
        specaug_time_masks=1,
        specaug_time_width=100,
        specaug_time_max_fraction=1.0,
    ),
    "ld": dict(
        specaug_freq_masks=2,
        specaug_freq_width=27,
        specaug_time_masks=2,
        specaug_time_width=100,
        specaug_time_max_fraction=1.0,
    ),
}


_STAGES = ("asr", "asr_st")


#: TrainConfig fields that never change a trained model: where it runs, with how many threads, and
#: how often it logs.  The workflow leaves them out of the params of ``train_model`` (Snakemake
#: reruns a job whose params change) and its script reads them from the config at run time.
RUNTIME_FIELDS = ("device", "num_threads", "log_every")


_SCHEDULES = ("noam", "constant")


# =========================================================================== config
@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Every training hyper-parameter (the workflow config's training section).

    Attributes:
        seed: seed of model initialisation, batch order, ST/ASR draws, SpecAugment, dropout.
        max_steps: number of optimizer updates to train for (in total, across resumptions).
        stage: ``"asr"`` (ASR targets only) or ``"asr_st"`` (each sample is ST with
            probability ``st_probability``, else ASR).
        st_probability: probability that a sample's target is its translation; used in
            stage ``asr_st`` only (stage ``asr`` always uses 0).
        peak_lr: learning rate at the end of the warm-up (``noam``) or throughout (``constant``).
        warmup_steps: linear warm-up length of the ``noam`` schedule (>= 1).
        lr_schedule: ``"noam"``: ``peak_lr * min(step / warmup, sqrt(warmup / step))``
            (fairseq ``inverse_sqrt`` with warm-up from 0); ``"constant"``: ``peak_lr``.
        betas: AdamW betas.
        adam_eps: AdamW epsilon.
        weight_decay: AdamW decoupled weight decay (all parameters).
        clip_norm: maximum global gradient L2 norm; 0 disables clipping.
        label_smoothing: epsilon of the label-smoothed CE.
        ce_weight / ctc_src_weight / ctc_tgt_weight: weights of the loss parts
            (a weight of 0, or a missing CTC head, drops that part).
        max_frames_per_batch: bound on ``batch size * longest input`` (feature frames).
        max_duration_frames: longer utterances are skipped (and counted); None: no bound.
        specaugment: apply SpecAugment to training batches.
        specaug_freq_masks / specaug_freq_width: number ``n`` of frequency masks and
            their maximum width ``F`` (bins).
        specaug_time_masks / specaug_time_width: number of time masks and their maximum
            width ``T`` (frames).
        specaug_time_max_fraction: ``p``: a time mask is at most ``floor(p * length)`` wide.
        checkpoint_every: write ``checkpoint_<step>.pt`` every this many steps (0: never;
            ``checkpoint_last.pt`` is written with each of them and at the end).
        keep_last: numbered checkpoints kept on disk (the newest ones, for averaging).
        dev_every: compute the dev loss every this many steps (0: never).
        device: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        bf16: bfloat16 autocast for the forward pass on a CUDA device (ignored on a CPU).
        cpu_bf16: on a CPU, bfloat16 autocast for the forward pass with the attention
            products in float32 (:func:`caspes.model.attention.fp32_attention`: the bf16
            attention kernel's backward pass is slow on CPUs); linear layers, convolutions and
            the other matrix products run in bf16, the losses and the optimizer in float32.
            Off: float32 throughout.  ``true``, ``false``, or ``"auto"``: where the CPU
            multiplies bf16 natively (:func:`caspes.model.inference.native_bf16`; elsewhere
            bf16 is emulated and slower).  Ignored on CUDA (``bf16`` applies there).
        num_threads: torch intra-op threads during training (0: leave torch's setting).
        log_every: log a progress line every this many steps (0: never).
    """

    seed: int = 1
    max_steps: int = 1000
    stage: str = "asr"
    st_probability: float = 0.5
    peak_lr: float = 2e-3
    warmup_steps: int = 25000
    lr_schedule: str = "noam"
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-8
    weight_decay: float = 0.001
    clip_norm: float = 10.0
    label_smoothing: float = 0.1
    ce_weight: float = 5.0
    ctc_src_weight: float = 1.0
    ctc_tgt_weight: float = 2.0
    max_frames_per_batch: int = 40000
    max_duration_frames: int | None = 3000
    specaugment: bool = True
    specaug_freq_masks: int = 2
    specaug_freq_width: int = 27
    specaug_time_masks: int = 2
    specaug_time_width: int = 100
    specaug_time_max_fraction: float = 1.0
    checkpoint_every: int = 1000
    keep_last: int = 5
    dev_every: int = 1000
    device: str = "auto"
    bf16: bool = True
    cpu_bf16: bool | str = False
    num_threads: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # from YAML/JSON
            object.__setattr__(self, "betas", tuple(self.betas))
        if not isinstance(self.cpu_bf16, bool) and self.cpu_bf16 != "auto":
            raise ValueError(f"cpu_bf16 must be true, false or 'auto', got {self.cpu_bf16!r}")
        if self.stage not in _STAGES:
            raise ValueError(f"stage must be one of {_STAGES}, got {self.stage!r}")
        if self.lr_schedule not in _SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.st_probability <= 1.0:
            raise ValueError(f"st_probability must be in [0, 1], got {self.st_probability}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")
        if not self.peak_lr > 0:
            raise ValueError(f"peak_lr must be > 0, got {self.peak_lr}")
        if self.lr_schedule == "noam" and self.warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1 for the noam schedule, got {self.warmup_steps}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        for name in (
            "weight_decay",
            "clip_norm",
            "ce_weight",
            "ctc_src_weight",
            "ctc_tgt_weight",
            "adam_eps",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_frames_per_batch < 1:
            raise ValueError(f"max_frames_per_batch must be >= 1, got {self.max_frames_per_batch}")
        if self.max_duration_frames is not None and self.max_duration_frames < 1:
            raise ValueError(f"max_duration_frames must be >= 1 or None, got {self.max_duration_frames}")
        for name in (
            "specaug_freq_masks",
            "specaug_freq_width",
            "specaug_time_masks",
            "specaug_time_width",
            "checkpoint_every",
            "keep_last",
            "dev_every",
            "num_threads",
            "log_every",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.specaug_time_max_fraction <= 1.0:
            raise ValueError(
                f"specaug_time_max_fraction must be in [0, 1], got {self.specaug_time_max_fraction}"
            )

    @property
    def effective_st_probability(self) -> float:
        """``st_probability`` in stage ``asr_st``, 0 in stage ``asr``."""
        return self.st_probability if self.stage == "asr_st" else 0.0

    def asdict(self) -> dict[str, Any]:
        """Plain dict (betas as a list), the inverse of :meth:`from_dict`."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from a (workflow config) mapping; unknown keys raise ValueError.

        A ``specaugment_policy`` key (``"lb"`` or ``"ld"``) fills the SpecAugment fields
        that are not given explicitly.
        """
        data = dict(data)
        policy = data.pop("specaugment_policy", None)
        if policy is not None:
            if policy not in SPECAUGMENT_POLICIES:
                raise ValueError(
                    f"specaugment_policy must be one of {sorted(SPECAUGMENT_POLICIES)}, got {policy!r}"
                )
            for key, value in SPECAUGMENT_POLICIES[policy].items():
                data.setdefault(key, value)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)


def stage_settings(config: Mapping[str, Any], model: str, stage: str) -> dict[str, Any]:
    """TrainConfig fields of one training stage of the workflow config: the shared ``training``
    settings, the stage's overrides (``models.<model>.stages.<stage>``), the top-level seed, the stage."""
    return {
        **config["training"],
        **config["models"][model]["stages"][stage],
        "seed": config["seed"],
        "stage": stage,
    }


def split_runtime(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``settings`` as (every field that shapes the trained model, defaults filled in by
    :class:`TrainConfig`; the :data:`RUNTIME_FIELDS` that were given).  The first is what the
    rule's params hold, so a changed default of such a field also retrains."""
    full = TrainConfig.from_dict(settings).asdict()
    result = {k: v for k, v in full.items() if k not in RUNTIME_FIELDS}
    return result, {k: settings[k] for k in RUNTIME_FIELDS if k in settings}
