"""Training of the paper's speech-to-text models (seed paper, Appendix B).

One function, :func:`train`, trains a :class:`~caspes.model.S2TModel` on one or more
feature manifests (a multilingual model reads the ``en`` and the ``it`` manifests at once)
with the fairseq-S2T / FBK recipe:

* **Objective** (``conformer_joint_ctc``): ``ce_weight * CE + ctc_src_weight * CTC_src +
  ctc_tgt_weight * CTC_tgt``.  Every part is a per-token average over the batch:

  - CE: label-smoothed cross-entropy (fairseq ``label_smoothed_cross_entropy``: the true
    class gets ``1 - eps``, every other class ``eps / (V - 1)``) over the decoder outputs,
    ignoring padding and -- fairseq ``--ignore-prefix-size 1`` -- the first output, the
    language tag, which is forced at decoding time;
  - CTC_src: CTC of the intermediate encoder layer (``ModelDimensions.ctc_src_layer``)
    against the transcript pieces (no tag, no EOS);
  - CTC_tgt: CTC of the final encoder output against the pieces of this sample's target
    text (the transcript for an ASR sample, the translation for an ST sample; no tag).

  The CTC blank is id 0, the SentencePiece ``<s>`` (BOS) symbol (:data:`CTC_BLANK_ID`):
  fairseq uses EOS as BOS, so ``<s>`` never occurs in a decoder input or target and is
  free to serve as blank.  ``zero_infinity=True``: a CTC target that cannot be aligned
  to the ``T' = ceil(T / 4)`` encoder frames contributes a zero loss; such samples are
  counted (logged at start from the manifests, and counted again during training).

* **Targets.**  For an utterance with source language ``s`` and translation language
  ``t``: the ASR target is ``<lang:s>`` + transcript pieces, the ST target ``<lang:t>`` +
  translation pieces.  ``decoder_input = [EOS] + target`` and ``output = target + [EOS]``
  (fairseq convention), right-padded with ``PAD_ID`` (1).  In stage ``asr`` every sample
  is an ASR sample; in stage ``asr_st`` each sample is an ST sample with probability
  ``st_probability``, drawn anew every epoch from the seed.

* **Batches** hold at most ``max_frames_per_batch`` *padded* input frames
  (``batch size * longest utterance``, fairseq's ``max_tokens`` rule; so the sum of the
  lengths is bounded too).  Utterances are sorted by length (ties broken by a seeded
  shuffle) and cut greedily into batches once; the batch *order* is reshuffled every
  epoch from ``(seed, epoch)``.  A single utterance longer than the bound forms a batch
  of its own (it can only happen when ``max_duration_frames`` is larger than
  ``max_frames_per_batch`` or unset).  Utterances longer than ``max_duration_frames``,
  with an empty transcript, without a translation (when one is needed) or with a target
  too long for the decoder are skipped -- and counted, with their reason, never silently.

* **SpecAugment** (fairseq ``specaugment`` transform, 'lb'/'ld' policies): on each
  training batch, after utterance CMVN, ``n`` frequency masks of width ``U{0..F}`` and
  ``n`` time masks of width ``U{0..min(T, floor(p * length))}``; masked cells are set to
  0.  Never applied to dev batches.

* **Optimisation**: AdamW (decoupled weight decay, as fairseq's ``adam``), gradient-norm
  clipping, Noam (linear warm-up, inverse-sqrt decay) or constant learning rate.

* **Checkpoints** are self-describing (dims, tokenizer bytes, config, package version)
  and are written atomically.  A run killed at any point and started again in the same
  ``out_dir`` resumes from ``checkpoint_last.pt`` and reaches bitwise the same parameters
  as an uninterrupted run (on CPU): all data randomness is a function of
  ``(seed, epoch)`` or ``(seed, step)``, and the global RNG states (used by dropout) are
  saved and restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import __version__
from .features import FeatureReader
from .io import DataError, Skip
from .model import ModelDimensions, S2TModel, S2TOutput, subsampled_lengths
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer

__all__ = [
    "CTC_BLANK_ID",
    "HISTORY_COLUMNS",
    "SPECAUGMENT_POLICIES",
    "Batch",
    "TrainConfig",
    "TrainingData",
    "average_checkpoints",
    "average_last_checkpoints",
    "discard_stale_checkpoints",
    "train_stage",
    "build_target",
    "compute_losses",
    "evaluate_loss",
    "load_checkpoint",
    "load_model",
    "lr_at_step",
    "resolve_device",
    "save_checkpoint",
    "spec_augment",
    "train",
]

log = logging.getLogger(__name__)

#: CTC blank: the ``<s>`` id, never a decoder input/output token (fairseq uses EOS as BOS).
CTC_BLANK_ID = BOS_ID

#: Columns of ``history.tsv`` (one row per optimizer step).
HISTORY_COLUMNS: tuple[str, ...] = (
    "step",
    "epoch",
    "lr",
    "loss",
    "ce",
    "ctc_src",
    "ctc_tgt",
    "dev_loss",
    "wall_s",
)

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
_SCHEDULES = ("noam", "constant")
_CHECKPOINT_LAST = "checkpoint_last.pt"

# Fields that may change between a run and its resumption without changing the result.
_RESUMABLE_FIELDS = frozenset(
    {"max_steps", "checkpoint_every", "keep_last", "dev_every", "device", "num_threads", "log_every"}
)


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
        bf16: bfloat16 autocast for the forward pass (CUDA only; ignored on CPU).
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
    num_threads: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.betas, list):  # from YAML/JSON
            object.__setattr__(self, "betas", tuple(self.betas))
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
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
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


def _make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _LrFactor(config))


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


# =========================================================================== data
def build_target(tag_id: int, pieces: Sequence[int]) -> tuple[list[int], list[int]]:
    """fairseq decoder input and output for a tagged target.

    ``target = [tag] + pieces``; returns ``([EOS] + target, target + [EOS])``.
    """
    target = [int(tag_id), *map(int, pieces)]
    return [EOS_ID, *target], [*target, EOS_ID]


def _ctc_min_frames(ids: Sequence[int]) -> int:
    """Fewest CTC frames that can emit ``ids``: one per label plus a blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:], strict=False) if a == b)


@dataclass(frozen=True)
class _Utterance:
    source: int  # index of the (reader, tokenizer) pair
    uid: str
    where: str  # manifest file:line
    n_frames: int
    encoder_frames: int
    src_tag: int
    src_ids: tuple[int, ...]
    tgt_tag: int | None
    tgt_ids: tuple[int, ...] | None


@dataclass
class Batch:
    """A collated batch (CPU tensors until :meth:`to`).

    Attributes:
        ids: utterance ids.
        features: (B, T, n_mels) float32, CMVN-normalised, zero-padded.
        lengths: (B,) long valid frames.
        decoder_input: (B, I) long ``[EOS, tag, pieces...]``, PAD-padded.
        target: (B, I) long ``[tag, pieces..., EOS]``, PAD-padded.
        ctc_src_targets / ctc_src_lengths: (B, S) / (B,) transcript pieces.
        ctc_tgt_targets / ctc_tgt_lengths: (B, S') / (B,) pieces of this sample's target text.
        is_st: (B,) bool, True for translation samples.
    """

    ids: list[str]
    features: Tensor
    lengths: Tensor
    decoder_input: Tensor
    target: Tensor
    ctc_src_targets: Tensor
    ctc_src_lengths: Tensor
    ctc_tgt_targets: Tensor
    ctc_tgt_lengths: Tensor
    is_st: Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device) -> Batch:
        fields = {
            f.name: (
                getattr(self, f.name).to(device)
                if isinstance(getattr(self, f.name), Tensor)
                else getattr(self, f.name)
            )
            for f in dataclasses.fields(self)
        }
        return Batch(**fields)


def _pad_2d(rows: Sequence[Sequence[int]], pad: int, min_width: int = 1) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    width = max(min_width, int(lengths.max().item()) if len(rows) else 0)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out, lengths


class TrainingData:
    """Utterances of one or more feature manifests, tokenised, filtered and bucketed.

    Args:
        sources: ``(FeatureReader, Tokenizer)`` pairs; all tokenizers must be the same
            model (identical bytes), e.g. the ``en_it`` tokenizer for both the ``en`` and
            the ``it`` manifest of a multilingual model.
        max_frames_per_batch: bound on ``batch size * longest input`` (see module doc).
        max_duration_frames: skip longer utterances (reason ``too_long``); None: keep all.
        seed: seed of the length-tie shuffle, the per-epoch batch order and the ST draws.
        need_translation: skip utterances without a usable translation (reason
            ``no_translation``: empty ``tgt_text`` or a target language the tokenizer has
            no tag for).  Needed for stage ``asr_st``.
        max_target_positions: skip utterances whose decoder input (``2 + pieces``) would
            be longer (reason ``target_too_long``); None: no bound.
        cache: keep every loaded feature matrix in memory (fine for small corpora);
            otherwise features are read from the archive one utterance at a time.
        name: label used in log messages.

    Attributes:
        skips: one :class:`~caspes.io.Skip` per skipped utterance (with manifest line).
        skipped: ``{reason: count}``.
        ctc_unalignable: ``{"transcript": n, "translation": n}``: kept utterances whose
            transcript / translation pieces need more CTC frames than the encoder produces
            (their CTC loss is zeroed by ``zero_infinity``).
        batches: the length-bucketed batches (lists of utterance indices), unshuffled.
    """

    def __init__(
        self,
        sources: Sequence[tuple[FeatureReader, Tokenizer]],
        *,
        max_frames_per_batch: int,
        max_duration_frames: int | None = None,
        seed: int = 1,
        need_translation: bool = False,
        max_target_positions: int | None = None,
        cache: bool = False,
        name: str = "train",
    ) -> None:
        if not sources:
            raise ValueError("TrainingData needs at least one (FeatureReader, Tokenizer) source")
        if max_frames_per_batch < 1:
            raise ValueError(f"max_frames_per_batch must be >= 1, got {max_frames_per_batch}")
        self.name = name
        self.readers = [reader for reader, _ in sources]
        self.tokenizer: Tokenizer = sources[0][1]
        self.tokenizer_bytes = Path(self.tokenizer.path).read_bytes()
        for _, tok in sources[1:]:
            if Path(tok.path).read_bytes() != self.tokenizer_bytes:
                raise ValueError(
                    f"all sources must share one tokenizer: {tok.path} differs from {self.tokenizer.path}"
                )
        self.max_frames_per_batch = int(max_frames_per_batch)
        self.max_duration_frames = max_duration_frames
        self.seed = int(seed)
        self.need_translation = need_translation
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self.n_mels: int | None = None

        self.utterances: list[_Utterance] = []
        self.skips: list[Skip] = []
        tok = self.tokenizer
        for source, reader in enumerate(self.readers):
            for row in reader.rows:
                where = f"{reader.path}:{row.get('_line', '?')}"
                uid = row["id"]
                for col in ("n_frames", "src_text", "src_lang"):
                    if col not in row:
                        raise DataError(f"{where}: training needs column '{col}'")
                try:
                    n_frames = int(row["n_frames"])
                except ValueError:
                    raise DataError(f"{where}: n_frames is not an integer: {row['n_frames']!r}") from None
                if n_frames < 1:
                    self.skips.append(Skip(uid, where, "no_frames", f"n_frames={n_frames}"))
                    continue
                if max_duration_frames is not None and n_frames > max_duration_frames:
                    self.skips.append(
                        Skip(uid, where, "too_long", f"{n_frames} > {max_duration_frames} frames")
                    )
                    continue
                src_lang = row["src_lang"]
                if src_lang not in tok.langs:
                    raise DataError(
                        f"{where}: tokenizer {tok.path} has no tag for source language '{src_lang}'"
                    )
                src_text = row["src_text"].strip()
                if not src_text:
                    self.skips.append(Skip(uid, where, "empty_transcript"))
                    continue
                src_ids = tuple(tok.encode(src_text))
                tgt_lang = row.get("tgt_lang", "")
                tgt_text = row.get("tgt_text", "").strip()
                tgt_tag: int | None = None
                tgt_ids: tuple[int, ...] | None = None
                if tgt_text and tgt_lang in tok.langs:
                    tgt_tag, tgt_ids = tok.lang_id(tgt_lang), tuple(tok.encode(tgt_text))
                elif need_translation:
                    why = "empty tgt_text" if not tgt_text else f"no tag for target language '{tgt_lang}'"
                    self.skips.append(Skip(uid, where, "no_translation", why))
                    continue
                if max_target_positions is not None:
                    longest = max(len(src_ids), len(tgt_ids) if (need_translation and tgt_ids) else 0)
                    if longest + 2 > max_target_positions:
                        self.skips.append(
                            Skip(
                                uid,
                                where,
                                "target_too_long",
                                f"{longest + 2} > {max_target_positions} positions",
                            )
                        )
                        continue
                self.utterances.append(
                    _Utterance(
                        source=source,
                        uid=uid,
                        where=where,
                        n_frames=n_frames,
                        encoder_frames=0,
                        src_tag=tok.lang_id(src_lang),
                        src_ids=src_ids,
                        tgt_tag=tgt_tag,
                        tgt_ids=tgt_ids,
                    )
                )
        if not self.utterances:
            raise DataError(f"{name}: no utterance left after filtering (skipped: {dict(self.skipped)})")
        self.n_frames = np.array([u.n_frames for u in self.utterances], dtype=np.int64)
        enc = subsampled_lengths(torch.from_numpy(self.n_frames)).tolist()
        self.utterances = [
            dataclasses.replace(u, encoder_frames=int(t)) for u, t in zip(self.utterances, enc, strict=True)
        ]
        self.ctc_unalignable = {
            "transcript": sum(_ctc_min_frames(u.src_ids) > u.encoder_frames for u in self.utterances),
            "translation": sum(
                u.tgt_ids is not None and _ctc_min_frames(u.tgt_ids) > u.encoder_frames
                for u in self.utterances
            ),
        }
        self.batches = self._make_batches()
        self.log_summary()

    @classmethod
    def from_config(
        cls,
        sources: Sequence[tuple[FeatureReader, Tokenizer]],
        config: TrainConfig,
        *,
        max_target_positions: int | None = None,
        cache: bool = False,
        name: str = "train",
    ) -> TrainingData:
        """Batching, filtering and seed from ``config`` (translations needed in stage asr_st)."""
        return cls(
            sources,
            max_frames_per_batch=config.max_frames_per_batch,
            max_duration_frames=config.max_duration_frames,
            seed=config.seed,
            need_translation=config.effective_st_probability > 0,
            max_target_positions=max_target_positions,
            cache=cache,
            name=name,
        )

    # ------------------------------------------------------------------ summary
    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def skipped(self) -> Counter:
        """``{reason: count}`` of the skipped utterances."""
        return Counter(s.reason for s in self.skips)

    @property
    def max_decoder_input_length(self) -> int:
        """Longest decoder input (``2 + pieces``) over ASR and available ST targets."""
        return 2 + max(
            max(len(u.src_ids), len(u.tgt_ids) if u.tgt_ids is not None else 0) for u in self.utterances
        )

    def log_summary(self) -> None:
        """Log utterances, skipped counts with reasons, batches, CTC-unalignable counts."""
        total = len(self.utterances) + len(self.skips)
        log.info(
            "%s: %d of %d utterances kept (%d frames, %.2f h) in %d batches of <= %d padded frames",
            self.name,
            len(self.utterances),
            total,
            int(self.n_frames.sum()),
            float(self.n_frames.sum()) / 360000.0,
            len(self.batches),
            self.max_frames_per_batch,
        )
        if self.skips:
            log.warning(
                "%s: skipped %d utterances: %s",
                self.name,
                len(self.skips),
                ", ".join(f"{reason} {n}" for reason, n in sorted(self.skipped.items())),
            )
            for s in self.skips[:5]:
                log.info("%s: skipped %s (%s): %s %s", self.name, s.id, s.source, s.reason, s.detail)
        if any(self.ctc_unalignable.values()):
            log.warning(
                "%s: utterances whose CTC target is longer than the encoder output (loss zeroed): %s",
                self.name,
                self.ctc_unalignable,
            )

    # ------------------------------------------------------------------ batching
    def _make_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, 0x5EED])
        order = rng.permutation(len(self.utterances))
        order = order[np.argsort(self.n_frames[order], kind="stable")]
        batches: list[list[int]] = []
        current: list[int] = []
        for idx in order.tolist():
            n = int(self.n_frames[idx])  # ascending: n is the batch's longest
            if current and (len(current) + 1) * n > self.max_frames_per_batch:
                batches.append(current)
                current = []
            current.append(idx)
        if current:
            batches.append(current)
        return batches

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches in the order of ``epoch`` (a permutation drawn from ``(seed, epoch)``)."""
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        return [self.batches[i] for i in rng.permutation(len(self.batches)).tolist()]

    def st_choices(self, epoch: int, st_probability: float) -> np.ndarray:
        """(N,) bool: which utterances are ST samples in ``epoch`` (drawn from ``(seed, epoch)``)."""
        u = np.random.default_rng([self.seed, int(epoch), 1]).random(len(self.utterances))
        return u < st_probability

    # ------------------------------------------------------------------ items
    def features(self, index: int) -> np.ndarray:
        """CMVN-normalised (T, n_mels) float32 features of utterance ``index``."""
        if index in self._cache:
            return self._cache[index]
        utt = self.utterances[index]
        feats = np.asarray(self.readers[utt.source][utt.uid], dtype=np.float32)
        if feats.ndim != 2 or feats.shape[0] != utt.n_frames:
            raise DataError(
                f"{utt.where}: features of '{utt.uid}' have shape {feats.shape}, manifest says {utt.n_frames} frames"
            )
        if self.n_mels is None:
            self.n_mels = int(feats.shape[1])
        elif feats.shape[1] != self.n_mels:
            raise DataError(f"{utt.where}: {feats.shape[1]} feature bins, others have {self.n_mels}")
        if self.cache:
            self._cache[index] = feats
        return feats

    def target(self, index: int, st: bool) -> tuple[int, tuple[int, ...]]:
        """``(tag id, pieces)`` of the ASR (``st=False``) or ST target of utterance ``index``."""
        utt = self.utterances[index]
        if not st:
            return utt.src_tag, utt.src_ids
        if utt.tgt_ids is None or utt.tgt_tag is None:
            raise DataError(f"{utt.where}: '{utt.uid}' has no usable translation for an ST sample")
        return utt.tgt_tag, utt.tgt_ids

    def collate(self, indices: Sequence[int], is_st: Sequence[bool] | None = None) -> Batch:
        """Pad features and targets of ``indices``; ``is_st`` (default all False) picks the task."""
        indices = [int(i) for i in indices]
        if is_st is None:
            is_st = [False] * len(indices)
        is_st = [bool(s) for s in is_st]
        if len(is_st) != len(indices):
            raise ValueError("is_st must have one entry per index")
        feats = [self.features(i) for i in indices]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        features = torch.zeros(len(feats), int(lengths.max().item()), feats[0].shape[1], dtype=torch.float32)
        for k, f in enumerate(feats):
            features[k, : f.shape[0]] = torch.from_numpy(f)
        dec_in, out, ctc_tgt = [], [], []
        for i, st in zip(indices, is_st, strict=True):
            tag, pieces = self.target(i, st)
            a, b = build_target(tag, pieces)
            dec_in.append(a)
            out.append(b)
            ctc_tgt.append(pieces)
        decoder_input, _ = _pad_2d(dec_in, PAD_ID)
        target, _ = _pad_2d(out, PAD_ID)
        ctc_src_targets, ctc_src_lengths = _pad_2d([self.utterances[i].src_ids for i in indices], PAD_ID)
        ctc_tgt_targets, ctc_tgt_lengths = _pad_2d(ctc_tgt, PAD_ID)
        return Batch(
            ids=[self.utterances[i].uid for i in indices],
            features=features,
            lengths=lengths,
            decoder_input=decoder_input,
            target=target,
            ctc_src_targets=ctc_src_targets,
            ctc_src_lengths=ctc_src_lengths,
            ctc_tgt_targets=ctc_tgt_targets,
            ctc_tgt_lengths=ctc_tgt_lengths,
            is_st=torch.tensor(is_st, dtype=torch.bool),
        )


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


# =========================================================================== losses
def _label_smoothed_ce(logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor, Tensor]:
    """Sum of fairseq's label-smoothed loss, sum of NLL, token count (ignoring prefix 1 and PAD)."""
    lprobs = torch.log_softmax(logits[:, 1:].float(), dim=-1)
    tgt = target[:, 1:]
    mask = tgt.ne(PAD_ID)
    nll = -lprobs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    if epsilon > 0:
        smooth = -lprobs.sum(dim=-1)
        eps_i = epsilon / (lprobs.size(-1) - 1)
        loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
    else:
        loss = nll
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(mask, loss, zero).sum(), torch.where(mask, nll, zero).sum(), mask.sum()


def _ctc(log_probs: Tensor, input_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Per-target-token CTC loss (sum over the batch / target tokens), blank = CTC_BLANK_ID."""
    loss = F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        targets,
        input_lengths,
        target_lengths,
        blank=CTC_BLANK_ID,
        reduction="sum",
        zero_infinity=True,
    )
    return loss / target_lengths.sum().clamp_min(1)


def compute_losses(output: S2TOutput, batch: Batch, config: TrainConfig) -> dict[str, Tensor]:
    """Loss parts of one batch.

    Returns:
        ``{"loss", "ce", "nll", "ctc_src", "ctc_tgt", "tokens"}``: the weighted total, the
        label-smoothed CE and plain NLL per target token (language-tag position and PAD
        ignored), the CTC losses per CTC target token (0 when the head is missing or its
        weight is 0) and the number of CE tokens.
    """
    ce_sum, nll_sum, tokens = _label_smoothed_ce(output.logits, batch.target, config.label_smoothing)
    denom = tokens.clamp_min(1)
    ce, nll = ce_sum / denom, nll_sum / denom
    zero = torch.zeros((), device=ce.device)
    ctc_src = zero
    if output.ctc_src_log_probs is not None and config.ctc_src_weight > 0:
        ctc_src = _ctc(
            output.ctc_src_log_probs, output.encoder_lengths, batch.ctc_src_targets, batch.ctc_src_lengths
        )
    ctc_tgt = zero
    if output.ctc_tgt_log_probs is not None and config.ctc_tgt_weight > 0:
        ctc_tgt = _ctc(
            output.ctc_tgt_log_probs, output.encoder_lengths, batch.ctc_tgt_targets, batch.ctc_tgt_lengths
        )
    loss = config.ce_weight * ce + config.ctc_src_weight * ctc_src + config.ctc_tgt_weight * ctc_tgt
    return {"loss": loss, "ce": ce, "nll": nll, "ctc_src": ctc_src, "ctc_tgt": ctc_tgt, "tokens": tokens}


def _count_unalignable(
    batch: Batch, enc_lengths: Tensor, config: TrainConfig, has_src: bool, has_tgt: bool
) -> int:
    """Samples of the batch with at least one CTC target longer than their encoder output."""
    enc = enc_lengths.tolist()
    count = 0
    for k in range(len(batch)):
        bad = False
        if has_src and config.ctc_src_weight > 0:
            ids = batch.ctc_src_targets[k, : int(batch.ctc_src_lengths[k])].tolist()
            bad |= _ctc_min_frames(ids) > enc[k]
        if has_tgt and config.ctc_tgt_weight > 0:
            ids = batch.ctc_tgt_targets[k, : int(batch.ctc_tgt_lengths[k])].tolist()
            bad |= _ctc_min_frames(ids) > enc[k]
        count += bad
    return count


def _autocast(device: torch.device, bf16: bool):
    if bf16 and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate_loss(
    model: S2TModel,
    data: TrainingData,
    stage: str,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> float:
    """Teacher-forced dev loss: token-weighted mean plain NLL (no label smoothing).

    Eval mode, no SpecAugment, batches in their fixed (unshuffled) order; the language
    tag position and PAD are ignored as in training.  Stage ``asr``: ASR targets; stage
    ``asr_st``: every utterance is scored on its ASR target and (when it has one) its ST
    target.  The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        for indices in data.batches:
            jobs = [(indices, [False] * len(indices))]
            if stage == "asr_st":
                with_st = [i for i in indices if data.utterances[i].tgt_ids is not None]
                if with_st:
                    jobs.append((with_st, [True] * len(with_st)))
            for idx, flags in jobs:
                batch = data.collate(idx, flags).to(device)
                with _autocast(device, bf16):
                    enc = model.encode(batch.features, batch.lengths)
                    logits = model.decode_teacher_forced(enc.states, enc.lengths, batch.decoder_input).logits
                _, nll_sum, n = _label_smoothed_ce(logits, batch.target, 0.0)
                total += float(nll_sum)
                tokens += int(n)
    finally:
        model.train(was_training)
    return total / max(tokens, 1)


# =========================================================================== checkpoints
def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(checkpoint, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this module (``weights_only`` unpickling: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a caspes checkpoint (needs 'dims' and 'model')")
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[S2TModel, dict[str, Any]]:
    """Model of a checkpoint (training or averaged), in eval mode on ``map_location``."""
    ckpt = load_checkpoint(path, map_location)
    model = S2TModel(ModelDimensions.from_dict(ckpt["dims"]))
    model.load_state_dict(ckpt["model"])
    model.to(map_location)
    model.eval()
    return model, ckpt


def average_checkpoints(paths: Sequence[str | Path], out_path: str | Path) -> Path:
    """Element-wise mean of the model weights of ``paths`` (fairseq ``average_checkpoints``).

    Floating tensors are averaged (accumulated in float64, stored in their own dtype);
    integer buffers (BatchNorm ``num_batches_tracked``) are taken from the last checkpoint.
    The output keeps dims, tokenizer, train config and version of the last checkpoint, adds
    ``averaged_from`` / ``averaged_steps``, and has no optimizer or RNG state.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    sums: dict[str, Tensor] = {}
    last: dict[str, Any] = {}
    steps: list[int | None] = []
    for k, path in enumerate(paths):
        ckpt = load_checkpoint(path, "cpu")
        state = ckpt["model"]
        if k == 0:
            first_dims, keys = ckpt["dims"], list(state)
            sums = {n: t.to(torch.float64).clone() for n, t in state.items() if t.is_floating_point()}
        else:
            if ckpt["dims"] != first_dims:
                raise ValueError(f"{path}: model dimensions differ from {paths[0]}")
            if list(state) != keys:
                raise ValueError(f"{path}: parameter names differ from {paths[0]}")
            for n, acc in sums.items():
                if state[n].shape != acc.shape:
                    raise ValueError(
                        f"{path}: '{n}' has shape {tuple(state[n].shape)}, expected {tuple(acc.shape)}"
                    )
                acc += state[n].to(torch.float64)
        steps.append(ckpt.get("step"))
        last = ckpt
    averaged = {
        n: (sums[n] / len(paths)).to(t.dtype) if n in sums else t.clone() for n, t in last["model"].items()
    }
    out = {
        "dims": last["dims"],
        "model": averaged,
        "step": last.get("step"),
        "train_config": last.get("train_config"),
        "tokenizer": last.get("tokenizer"),
        "caspes_version": last.get("caspes_version", __version__),
        "averaged_from": [str(p) for p in paths],
        "averaged_steps": steps,
    }
    log.info("averaged %d checkpoints (steps %s) into %s", len(paths), steps, out_path)
    return save_checkpoint(out_path, out)


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(name), [int(x) for x in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _numbered_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in out_dir.glob("checkpoint_*.pt"):
        suffix = p.stem[len("checkpoint_") :]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` a copy (hard link if possible) of ``src``."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


# =========================================================================== history
class _History:
    """``history.tsv``: header + one row per step; flushed on every row."""

    def __init__(self, path: Path, keep_rows: int | None) -> None:
        self.path = path
        if keep_rows is None or not path.is_file():
            if keep_rows:
                log.warning("%s: missing; the rows before the resumed step are lost", path)
            lines = ["\t".join(HISTORY_COLUMNS) + "\n"]
            self.rows = 0
        else:
            old = path.read_text(encoding="utf-8").splitlines(keepends=True)
            body = old[1 : 1 + keep_rows]
            if len(body) < keep_rows:
                log.warning("%s: has %d rows, the checkpoint expected %d", path, len(body), keep_rows)
            lines = ["\t".join(HISTORY_COLUMNS) + "\n", *body]
            self.rows = len(body)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, path)
        self._f = open(path, "a", encoding="utf-8")

    def write(self, values: dict[str, Any]) -> None:
        self._f.write("\t".join(_fmt(values.get(c)) for c in HISTORY_COLUMNS) + "\n")
        self._f.flush()
        self.rows += 1

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)


# =========================================================================== training
def _config_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    current = new.asdict()
    return sorted(
        k for k in set(old) | set(current) if k not in _RESUMABLE_FIELDS and old.get(k) != current.get(k)
    )


def train(
    model_dims: ModelDimensions,
    config: TrainConfig,
    train_data: TrainingData,
    dev_data: TrainingData | None,
    out_dir: str | Path,
    init_checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train (or resume training) a model; returns the path of ``checkpoint_last.pt``.

    Args:
        model_dims: dimensions of the model (must match the tokenizer's vocabulary).
        config: hyper-parameters.
        train_data: training utterances (its batching and filtering are used as built;
            :meth:`TrainingData.from_config` builds it from ``config``).
        dev_data: dev utterances for the dev loss, or None.
        out_dir: where ``history.tsv`` and the checkpoints go.  If it holds
            ``checkpoint_last.pt`` the run resumes from it (model, optimizer, scheduler,
            RNG states, step, epoch and position in the epoch); ``init_checkpoint`` is then
            ignored.
        init_checkpoint: start from this checkpoint's *model weights* (second stage);
            optimizer and scheduler start fresh.  Its dims must equal ``model_dims`` up to
            dropout and its tokenizer must be ``train_data``'s.
        progress: show a tqdm progress bar.
        callback: called as ``callback(step, parts)`` after every step (after that step's
            history row and checkpoint); ``parts`` holds the logged numbers.  An exception
            raised there stops training (tests use it to simulate a kill).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(model_dims, config, train_data, dev_data, out_dir, init_checkpoint, progress, callback)
    finally:
        torch.set_num_threads(previous_threads)


def _check_compatible(dims: ModelDimensions, data: TrainingData, what: str) -> None:
    vocab = len(data.tokenizer)
    if dims.vocab_size < vocab:
        raise ValueError(
            f"model vocab_size={dims.vocab_size} < {what} tokenizer size {vocab} ({data.tokenizer.path})"
        )
    if dims.vocab_size > vocab:
        log.warning(
            "model vocab_size=%d > tokenizer size %d: %d ids are never used",
            dims.vocab_size,
            vocab,
            dims.vocab_size - vocab,
        )
    if dims.pad_id != PAD_ID or dims.eos_id != EOS_ID:
        raise ValueError(
            f"model pad/eos ids ({dims.pad_id}, {dims.eos_id}) differ from the tokenizer's ({PAD_ID}, {EOS_ID})"
        )
    if data.max_decoder_input_length > dims.max_target_positions:
        raise ValueError(
            f"{what}: a decoder input of {data.max_decoder_input_length} tokens exceeds max_target_positions="
            f"{dims.max_target_positions}; build the data with max_target_positions to skip such utterances"
        )
    if data.n_mels is not None and data.n_mels != dims.n_mels:
        raise ValueError(f"{what}: features have {data.n_mels} bins, the model expects {dims.n_mels}")


def _same_dims_but_dropout(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "dropout"} == {k: v for k, v in b.items() if k != "dropout"}


def _train(
    dims: ModelDimensions,
    config: TrainConfig,
    data: TrainingData,
    dev_data: TrainingData | None,
    out_dir: Path,
    init_checkpoint: str | Path | None,
    progress: bool,
    callback: Callable[[int, dict[str, float]], None] | None,
) -> Path:
    from tqdm import tqdm

    device = resolve_device(config.device)
    use_bf16 = config.bf16 and device.type == "cuda"
    _check_compatible(dims, data, data.name)
    if dev_data is not None:
        _check_compatible(dims, dev_data, dev_data.name)
        if dev_data.tokenizer_bytes != data.tokenizer_bytes:
            raise ValueError("dev and training data use different tokenizers")
    st_probability = config.effective_st_probability
    if st_probability > 0 and not data.need_translation:
        missing = sum(u.tgt_ids is None for u in data.utterances)
        if missing:
            raise ValueError(
                f"stage asr_st needs translations but {missing} training utterances have none; "
                "build TrainingData with need_translation=True (TrainingData.from_config does)"
            )

    last_path = out_dir / _CHECKPOINT_LAST
    resume_path = last_path
    if not last_path.is_file() and _numbered_checkpoints(out_dir):
        # A workflow manager may delete the declared output (checkpoint_last.pt) of a killed
        # job before rerunning it; the numbered checkpoints beside it survive.
        resume_path = _numbered_checkpoints(out_dir)[-1][1]
    resume = load_checkpoint(resume_path, "cpu") if resume_path.is_file() else None
    if resume is not None:
        if resume["dims"] != dims.asdict():
            raise ValueError(
                f"{resume_path}: model dimensions differ from the requested ones; use another out_dir"
            )
        if resume.get("tokenizer", {}).get("model") != data.tokenizer_bytes:
            raise ValueError(f"{resume_path}: was trained with another tokenizer than {data.tokenizer.path}")
        diffs = _config_differences(resume.get("train_config") or {}, config)
        if diffs:
            log.warning("%s: training config differs from the checkpoint's in %s", resume_path, diffs)
        if resume["step"] >= config.max_steps:
            log.info(
                "%s: already at step %d (max_steps=%d), nothing to do",
                resume_path,
                resume["step"],
                config.max_steps,
            )
            if resume_path != last_path:
                _link_or_copy(resume_path, last_path)
            return last_path

    # Model, optimizer, scheduler: deterministic construction from the seed.
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    model = S2TModel(dims)
    if resume is None and init_checkpoint is not None:
        init = load_checkpoint(init_checkpoint, "cpu")
        if not _same_dims_but_dropout(init["dims"], dims.asdict()):
            raise ValueError(f"{init_checkpoint}: model dimensions differ from the requested ones")
        init_tok = (init.get("tokenizer") or {}).get("model")
        if init_tok is not None and init_tok != data.tokenizer_bytes:
            raise ValueError(
                f"{init_checkpoint}: was trained with another tokenizer than {data.tokenizer.path}"
            )
        model.load_state_dict(init["model"])
        log.info("initialised model weights from %s (step %s)", init_checkpoint, init.get("step"))
    model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.peak_lr,
        betas=config.betas,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    scheduler = _make_scheduler(optimizer, config)

    step, epoch, batch_in_epoch, wall_offset, unalignable = 0, 1, 0, 0.0, 0
    history_rows: int | None = None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        step, epoch, batch_in_epoch = int(resume["step"]), int(resume["epoch"]), int(resume["batch_in_epoch"])
        wall_offset = float(resume.get("wall_s", 0.0))
        unalignable = int(resume.get("ctc_unalignable_seen", 0))
        history_rows = int(resume["history_rows"])
        _set_rng_state(resume["rng"])
        log.info("resuming from step %d (epoch %d, batch %d) of %s", step, epoch, batch_in_epoch, resume_path)
        del resume
    history = _History(out_dir / "history.tsv", history_rows)

    n_params = model.num_parameters()
    log.info(
        "training %s model: %d parameters, stage %s (st_probability %.2f), %d steps, device %s%s",
        "x".join(map(str, (dims.d_model, dims.encoder_layers, dims.decoder_layers))),
        n_params,
        config.stage,
        st_probability,
        config.max_steps,
        device,
        " (bf16)" if use_bf16 else "",
    )
    log.info(
        "%s: %d utterances, %d batches per epoch; skipped %d (%s)",
        data.name,
        len(data),
        len(data.batches),
        len(data.skips),
        ", ".join(f"{r} {n}" for r, n in sorted(data.skipped.items())) or "none",
    )
    if dev_data is not None:
        log.info(
            "%s: %d utterances, %d batches; skipped %d (%s)",
            dev_data.name,
            len(dev_data),
            len(dev_data.batches),
            len(dev_data.skips),
            ", ".join(f"{r} {n}" for r, n in sorted(dev_data.skipped.items())) or "none",
        )

    tokenizer_entry = {"path": str(data.tokenizer.path), "model": data.tokenizer_bytes}

    def checkpoint(numbered: bool) -> None:
        history.sync()
        ckpt = {
            "dims": dims.asdict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": _rng_state(),
            "train_config": config.asdict(),
            "tokenizer": tokenizer_entry,
            "caspes_version": __version__,
            "history_rows": history.rows,
            "wall_s": wall_offset + (time.monotonic() - t_start),
            "ctc_unalignable_seen": unalignable,
        }
        if numbered:
            path = save_checkpoint(out_dir / f"checkpoint_{step}.pt", ckpt)
            _link_or_copy(path, last_path)
            for _, old in _numbered_checkpoints(out_dir)[: -config.keep_last or None]:
                old.unlink(missing_ok=True)
        else:
            save_checkpoint(last_path, ckpt)

    t_start = time.monotonic()
    t_log, steps_since_log = t_start, 0
    st_draws = data.st_choices(epoch, st_probability)
    order = data.epoch_batches(epoch)
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="train", mininterval=2)
    try:
        while step < config.max_steps:
            if batch_in_epoch >= len(order):
                epoch, batch_in_epoch = epoch + 1, 0
                order = data.epoch_batches(epoch)
                st_draws = data.st_choices(epoch, st_probability)
            indices = order[batch_in_epoch]
            batch_in_epoch += 1
            step += 1
            batch = data.collate(indices, st_draws[indices])
            if config.specaugment:
                batch.features = spec_augment(
                    batch.features, batch.lengths, config, np.random.default_rng([config.seed, step, 2])
                )
            batch = batch.to(device)
            lr = optimizer.param_groups[0]["lr"]
            with _autocast(device, use_bf16):
                output = model(batch.features, batch.lengths, batch.decoder_input)
            parts = compute_losses(output, batch, config)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"step {step}: non-finite loss {float(loss)} (batch {batch.ids[:3]}...)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            unalignable += _count_unalignable(
                batch,
                output.encoder_lengths,
                config,
                output.ctc_src_log_probs is not None,
                output.ctc_tgt_log_probs is not None,
            )

            values: dict[str, Any] = {
                "step": step,
                "epoch": epoch,
                "lr": float(lr),
                "loss": loss.item(),
                "ce": parts["ce"].item(),
                "ctc_src": parts["ctc_src"].item(),
                "ctc_tgt": parts["ctc_tgt"].item(),
                "dev_loss": None,
            }
            if dev_data is not None and config.dev_every > 0 and step % config.dev_every == 0:
                values["dev_loss"] = evaluate_loss(model, dev_data, config.stage, device, use_bf16)
                log.info("step %d: dev loss %.4f", step, values["dev_loss"])
            values["wall_s"] = round(wall_offset + (time.monotonic() - t_start), 3)
            history.write(values)
            bar.update(1)
            steps_since_log += 1
            if config.log_every > 0 and step % config.log_every == 0:
                now = time.monotonic()
                log.info(
                    "step %d epoch %d: loss %.4f (ce %.4f, ctc_src %.4f, ctc_tgt %.4f) lr %.3g, %.2f steps/s%s",
                    step,
                    epoch,
                    values["loss"],
                    values["ce"],
                    values["ctc_src"],
                    values["ctc_tgt"],
                    lr,
                    steps_since_log / max(now - t_log, 1e-9),
                    f", {unalignable} CTC-unalignable samples so far" if unalignable else "",
                )
                t_log, steps_since_log = now, 0
            numbered = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
            if numbered or step == config.max_steps:
                checkpoint(numbered)
            if callback is not None:
                callback(step, {k: v for k, v in values.items() if v is not None})
        if not last_path.is_file():  # max_steps == 0 on a fresh run: save the initial model
            checkpoint(False)
    finally:
        bar.close()
        history.close()
    if unalignable:
        log.warning(
            "%d training samples had a CTC target longer than their encoder output (loss zeroed)", unalignable
        )
    log.info("finished at step %d (epoch %d): %s", step, epoch, last_path)
    return last_path


# =========================================================================== workflow entry points
def train_stage(
    train_manifests: Sequence[str | Path],
    dev_manifests: Sequence[str | Path],
    tokenizer_path: str | Path,
    dims: dict[str, Any],
    settings: dict[str, Any],
    out_dir: str | Path,
    init_checkpoint: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """One training stage from workflow settings: feature manifests, a tokenizer, a dims dict
    (without ``vocab_size``, which the tokenizer gives) and TrainConfig fields."""
    tokenizer = Tokenizer(tokenizer_path)
    model_dims = ModelDimensions.from_dict({**dims, "vocab_size": len(tokenizer)})
    config = TrainConfig.from_dict(settings)
    limit = model_dims.max_target_positions

    def data(manifests: Sequence[str | Path], name: str) -> TrainingData:
        sources = [(FeatureReader(m), tokenizer) for m in manifests]
        return TrainingData.from_config(sources, config, max_target_positions=limit, cache=True, name=name)

    discard_stale_checkpoints(Path(out_dir), model_dims, config, tokenizer)

    return train(
        model_dims,
        config,
        data(train_manifests, "train"),
        data(dev_manifests, "dev"),
        out_dir,
        init_checkpoint=init_checkpoint,
        progress=progress,
    )


def discard_stale_checkpoints(
    out_dir: Path, dims: ModelDimensions, config: TrainConfig, tokenizer: Tokenizer
) -> bool:
    """Remove checkpoints and history written with other settings; True if something was removed.

    The workflow reruns a training stage when one of its settings changes: the checkpoints
    of the old settings must then not be resumed. Settings that may change between
    resumptions (``max_steps``, checkpoint and logging intervals, device) do not count, so
    raising ``max_steps`` continues training where it stopped.
    """
    numbered = _numbered_checkpoints(out_dir)
    newest = out_dir / _CHECKPOINT_LAST
    if not newest.is_file():
        if not numbered:
            return False
        newest = numbered[-1][1]
    old = load_checkpoint(newest, "cpu")
    reasons = _config_differences(old.get("train_config") or {}, config)
    if old.get("dims") != dims.asdict():
        reasons.append("model dimensions")
    if (old.get("tokenizer") or {}).get("model") != tokenizer.path.read_bytes():
        reasons.append("tokenizer")
    if not reasons:
        return False
    log.warning("%s: settings changed since its checkpoints were written (%s): starting over", out_dir, reasons)
    for path in [p for _, p in numbered] + [out_dir / _CHECKPOINT_LAST, out_dir / "history.tsv"]:
        path.unlink(missing_ok=True)
    return True


def average_last_checkpoints(stage_dir: str | Path, k: int, out_path: str | Path) -> Path:
    """Average the last ``k`` numbered checkpoints of a stage (``checkpoint_last.pt`` if none)."""
    numbered = [p for _, p in _numbered_checkpoints(Path(stage_dir))][-k:]
    if not numbered:
        numbered = [Path(stage_dir) / _CHECKPOINT_LAST]
    log.info("averaging %d checkpoint(s): %s", len(numbered), ", ".join(p.name for p in numbered))
    return average_checkpoints(numbered, out_path)
