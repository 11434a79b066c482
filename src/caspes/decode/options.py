"""Decoding settings and the maximum target length."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "DecodingOptions",
    "max_target_length",
    "WORKFLOW_KEYS",
    "RUNTIME_KEYS",
    "split_decoding_settings",
    "decoding_result_settings",
]


@dataclass(frozen=True)
class DecodingOptions:
    """Decoding settings.

    Attributes:
        max_len_a / max_len_b: maximum target length ``a * T' + b`` (``T'`` encoder frames of the
            utterance), capped at ``max_target_positions - 1``; counts the forced prefix, not EOS.
        batch_size: at most this many utterances per decoder batch (None: no limit; the
            frame budget of :func:`decode_manifest` still applies).
        beam_size: 1 = greedy search, > 1 = beam search (:mod:`caspes.decode.beam`).
        force_lang_tag: :func:`decode_manifest` forces the target-language tag as the first
            target token (as in training); False lets the model choose it.
        no_repeat_ngram_size: beam search never repeats an n-gram of this size (0: off; the
            study uses 5). Greedy search does not apply it.
    """

    max_len_a: float = 0.0
    max_len_b: int = 200
    batch_size: int | None = None
    beam_size: int = 1
    force_lang_tag: bool = True
    no_repeat_ngram_size: int = 5

    def __post_init__(self) -> None:
        if self.max_len_a < 0:
            raise ValueError(f"max_len_a must be >= 0, got {self.max_len_a}")
        if not isinstance(self.max_len_b, int) or self.max_len_b < 1:
            raise ValueError(f"max_len_b must be a positive int, got {self.max_len_b!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")


def max_target_length(encoder_length: int, options: DecodingOptions, max_target_positions: int) -> int:
    """Maximum target tokens (forced prefix included, EOS excluded) for ``T' = encoder_length``."""
    return min(int(options.max_len_a * encoder_length + options.max_len_b), max_target_positions - 1)


#: Keys of the workflow's ``decoding`` settings that are not :class:`DecodingOptions` fields.
WORKFLOW_KEYS = ("splits", "batch_frames", "comet_checkpoint", "device")


def split_decoding_settings(settings: Mapping[str, Any]) -> tuple[DecodingOptions, dict[str, Any]]:
    """The config's ``decoding`` block as (:class:`DecodingOptions`, the other keys: which splits,
    ``batch_frames``, ``comet_checkpoint``, ``device``)."""
    options = DecodingOptions(**{k: v for k, v in settings.items() if k not in WORKFLOW_KEYS})
    return options, {k: settings[k] for k in WORKFLOW_KEYS if k in settings}


#: Keys of the ``decoding`` block that never change an output: which splits are decoded (each is a
#: job of its own, so adding one adds jobs) and the device.
RUNTIME_KEYS = ("splits", "device")


def decoding_result_settings(settings: Mapping[str, Any], extra: Sequence[str] = ()) -> dict[str, Any]:
    """What of the config's ``decoding`` block shapes a decoding: every :class:`DecodingOptions`
    field (defaults filled in), plus the workflow keys named in ``extra`` (the decode rule adds
    ``batch_frames`` and ``comet_checkpoint``).  A rule's params are this, never the whole block."""
    options, other = split_decoding_settings(settings)
    unknown = [k for k in extra if k in RUNTIME_KEYS or k not in WORKFLOW_KEYS]
    if unknown:
        raise ValueError(f"not result-shaping workflow keys of 'decoding': {unknown}")
    return {**asdict(options), **{k: other[k] for k in extra}}
