"""Checks before training: model dimensions against the data, and saved settings against
the current ones (which settings may change when a run is resumed)."""

from __future__ import annotations

import logging
from typing import Any

from caspes.model import ModelDimensions
from caspes.tokenizer import EOS_ID, PAD_ID
from caspes.train.config import RUNTIME_FIELDS, TrainConfig
from caspes.train.data import TrainingData

__all__ = ["RESUMABLE_FIELDS", "config_differences", "check_compatible", "same_dims_but_dropout"]

log = logging.getLogger(__name__)

#: TrainConfig fields that may change between a run and its resumption without changing the result.
RESUMABLE_FIELDS = frozenset({"max_steps", "checkpoint_every", "keep_last", "dev_every", *RUNTIME_FIELDS})


def config_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    """Sorted names of the fields (other than :data:`RESUMABLE_FIELDS`) in which the saved
    settings ``old`` (``TrainConfig.asdict()`` of a checkpoint) differ from ``new``."""
    current = new.asdict()
    return sorted(
        k for k in set(old) | set(current) if k not in RESUMABLE_FIELDS and old.get(k) != current.get(k)
    )


def check_compatible(dims: ModelDimensions, data: TrainingData, what: str) -> None:
    """Raise ValueError unless a model of ``dims`` can be trained on ``data`` (vocabulary,
    PAD/EOS ids, decoder input lengths, feature bins); warn about unused vocabulary ids.
    ``what`` names the data in the messages."""
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


def same_dims_but_dropout(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two ``ModelDimensions.asdict()`` are equal up to ``dropout``."""
    return {k: v for k, v in a.items() if k != "dropout"} == {k: v for k, v in b.items() if k != "dropout"}
