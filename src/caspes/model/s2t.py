"""Speech-to-text model: Conformer encoder + Transformer decoder + joint CTC heads
(fairseq / FBK-fairseq ``conformer_joint_ctc``).

Token convention (fairseq): the decoder input is ``[EOS, y_1, ..., y_n]`` (EOS used as
BOS, ``bos_id == eos_id`` by default) and the target is ``[y_1, ..., y_n, EOS]``; ``y_1``
may be a language tag.  Batches are right-padded with ``pad_id``.  Data preparation lives
elsewhere; this module only documents the convention.

CTC heads (``Linear(D, V)`` + log-softmax, blank = whatever id the training code uses):

* ``ctc_src``: on the output of encoder layer ``ctc_src_layer`` (1-based);
* ``ctc_tgt``: on the final encoder output.

Both return batch-first log-probabilities ``(B, T', V)``; transpose to ``(T', B, V)`` for
:func:`torch.nn.functional.ctc_loss`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .conformer import ConformerEncoder, EncoderOutput, lengths_to_padding_mask
from .decoder import DecoderCache, TransformerDecoder

__all__ = [
    "DecoderOutput",
    "ModelDimensions",
    "PAPER_DIMENSIONS",
    "PAPER_PARAMETERS",
    "S2TModel",
    "S2TOutput",
    "count_parameters",
]


@dataclass(frozen=True, kw_only=True)
class ModelDimensions:
    """Hyper-parameters of :class:`S2TModel` (stored in checkpoints).

    Attributes:
        d_model: model width ``D``.
        encoder_layers / decoder_layers: number of layers.
        encoder_heads / decoder_heads: attention heads.
        encoder_ffn / decoder_ffn: FFN hidden sizes.
        vocab_size: ``V`` (shared by decoder and CTC heads).
        n_mels: input filterbank channels.
        conv_kernel: Conformer depthwise conv kernel (odd).
        conv_channels: subsampler inner width (fairseq ``conv_channels``, before GLU).
        ctc_src_layer: 1-based encoder layer feeding the source CTC head; 0/None: no head.
        ctc_tgt: CTC head on the final encoder output.
        dropout: dropout probability everywhere.
        tie_embeddings: tie decoder output projection and token embedding.
        max_target_positions: maximum decoder input length.
        pad_id / bos_id / eos_id: special token ids (fairseq: pad 1, eos 2, bos = eos).
    """

    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn: int
    decoder_ffn: int
    vocab_size: int
    n_mels: int = 80
    conv_kernel: int = 31
    conv_channels: int = 1024
    ctc_src_layer: int | None = None
    ctc_tgt: bool = True
    dropout: float = 0.1
    tie_embeddings: bool = False
    max_target_positions: int = 1024
    pad_id: int = 1
    bos_id: int = 2
    eos_id: int = 2

    def __post_init__(self) -> None:
        positive = (
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "encoder_heads",
            "decoder_heads",
            "encoder_ffn",
            "decoder_ffn",
            "vocab_size",
            "n_mels",
            "conv_kernel",
            "conv_channels",
            "max_target_positions",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % 2 != 0 or self.d_model < 4:
            raise ValueError(f"d_model must be even and >= 4, got {self.d_model}")
        for name in ("encoder_heads", "decoder_heads"):
            if self.d_model % getattr(self, name) != 0:
                raise ValueError(f"d_model={self.d_model} not divisible by {name}={getattr(self, name)}")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        if self.conv_channels % 2 != 0:
            raise ValueError(f"conv_channels must be even, got {self.conv_channels}")
        if self.ctc_src_layer is not None and not 0 <= self.ctc_src_layer <= self.encoder_layers:
            raise ValueError(
                f"ctc_src_layer must be in [0, {self.encoder_layers}] or None, got {self.ctc_src_layer}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} must be in [0, {self.vocab_size}), got {value!r}")
        if self.pad_id in (self.bos_id, self.eos_id):
            raise ValueError("pad_id must differ from bos_id and eos_id")

    @property
    def has_ctc_src(self) -> bool:
        """Whether the intermediate (source) CTC head exists."""
        return bool(self.ctc_src_layer)

    def asdict(self) -> dict[str, Any]:
        """Plain dict (JSON/checkpoint friendly)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDimensions:
        """Inverse of :meth:`asdict`; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelDimensions fields: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:  # missing required fields
            raise ValueError(str(exc)) from exc


def _paper(d_model: int, enc: int, dec: int, heads: int, ffn: int, vocab: int) -> ModelDimensions:
    return ModelDimensions(
        d_model=d_model,
        encoder_layers=enc,
        decoder_layers=dec,
        encoder_heads=heads,
        decoder_heads=heads,
        encoder_ffn=ffn,
        decoder_ffn=ffn,
        vocab_size=vocab,
        ctc_src_layer=(enc * 2) // 3,
        ctc_tgt=True,
        tie_embeddings=False,
    )


#: Paper model sizes (untied output projection, both CTC heads; CTC src at 8 / 16).
PAPER_DIMENSIONS: dict[str, ModelDimensions] = {
    "base": _paper(512, 12, 6, 8, 2048, 8000),
    "small": _paper(1024, 12, 6, 16, 4096, 16000),
    "large": _paper(1024, 24, 12, 16, 4096, 16000),
}

#: Parameter counts reported in the paper.
PAPER_PARAMETERS: dict[str, int] = {"base": 125_000_000, "small": 474_000_000, "large": 878_000_000}


@dataclass
class DecoderOutput:
    """Teacher-forced decoder result.

    Attributes:
        logits: (B, I, V).
        cross_attention: (B, L_dec, H, I, T') softmax weights (0 on padded frames) or None.
    """

    logits: Tensor
    cross_attention: Tensor | None = None


@dataclass
class S2TOutput:
    """Training forward result.

    Attributes:
        logits: (B, I, V) decoder logits.
        encoder_lengths: (B,) long ``T'``.
        encoder_padding_mask: bool (B, T').
        ctc_src_log_probs: (B, T', V) or None.
        ctc_tgt_log_probs: (B, T', V) or None.
    """

    logits: Tensor
    encoder_lengths: Tensor
    encoder_padding_mask: Tensor
    ctc_src_log_probs: Tensor | None = None
    ctc_tgt_log_probs: Tensor | None = None


def _as_padding_mask(encoder_states: Tensor, lengths_or_mask: Tensor) -> Tensor:
    """(B,) integer lengths or bool (B, T') mask -> bool (B, T') padding mask (True = pad)."""
    b, t = encoder_states.shape[0], encoder_states.shape[1]
    if lengths_or_mask.dtype == torch.bool:
        if lengths_or_mask.shape != (b, t):
            raise ValueError(f"padding mask must be ({b}, {t}), got {tuple(lengths_or_mask.shape)}")
        mask = lengths_or_mask
    else:
        if lengths_or_mask.dtype.is_floating_point or lengths_or_mask.shape != (b,):
            raise ValueError(
                f"encoder lengths must be integer ({b},), got {lengths_or_mask.dtype} {tuple(lengths_or_mask.shape)}"
            )
        mask = lengths_to_padding_mask(lengths_or_mask.to(encoder_states.device), t)
    if mask.device.type != "meta" and bool(mask.all(dim=1).any()):
        raise ValueError("every item needs at least one valid encoder frame")
    return mask.to(encoder_states.device)


class S2TModel(nn.Module):
    """Conformer encoder + Transformer decoder + CTC heads.

    Args:
        dims: :class:`ModelDimensions`.
    """

    def __init__(self, dims: ModelDimensions) -> None:
        super().__init__()
        if not isinstance(dims, ModelDimensions):
            raise ValueError(f"dims must be ModelDimensions, got {type(dims).__name__}")
        self.dims = dims
        self.encoder = ConformerEncoder(
            n_mels=dims.n_mels,
            d_model=dims.d_model,
            num_layers=dims.encoder_layers,
            num_heads=dims.encoder_heads,
            ffn_dim=dims.encoder_ffn,
            conv_kernel=dims.conv_kernel,
            conv_channels=dims.conv_channels,
            dropout=dims.dropout,
            intermediate_layer=dims.ctc_src_layer,
        )
        self.decoder = TransformerDecoder(
            vocab_size=dims.vocab_size,
            d_model=dims.d_model,
            num_layers=dims.decoder_layers,
            num_heads=dims.decoder_heads,
            ffn_dim=dims.decoder_ffn,
            dropout=dims.dropout,
            pad_id=dims.pad_id,
            max_positions=dims.max_target_positions,
            tie_embeddings=dims.tie_embeddings,
        )
        self.ctc_dropout = nn.Dropout(dims.dropout)
        self.ctc_src = nn.Linear(dims.d_model, dims.vocab_size) if dims.has_ctc_src else None
        self.ctc_tgt = nn.Linear(dims.d_model, dims.vocab_size) if dims.ctc_tgt else None

    # ------------------------------------------------------------------ encoder side
    def encode(self, features: Tensor, lengths: Tensor) -> EncoderOutput:
        """Encode filterbanks.

        Args:
            features: (B, T, n_mels) float.
            lengths: (B,) long, valid frames in ``[1, T]``.

        Returns:
            :class:`EncoderOutput` (states (B, T', D), lengths (B,), padding_mask (B, T'),
            intermediate (B, T', D) after layer ``ctc_src_layer`` or None).
        """
        return self.encoder(features, lengths)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """(B,) feature frame counts -> (B,) encoder frame counts ``ceil(T/4)``."""
        return self.encoder.output_lengths(lengths)

    def ctc_log_probs(self, encoder_out: EncoderOutput, head: str = "tgt") -> Tensor:
        """CTC log-probabilities of one head.

        Args:
            encoder_out: output of :meth:`encode`.
            head: ``"src"`` (intermediate layer) or ``"tgt"`` (final layer).

        Returns:
            (B, T', V) float32 log-probs.
        """
        if head == "src":
            if self.ctc_src is None or encoder_out.intermediate is None:
                raise ValueError("this model has no source CTC head (ctc_src_layer is 0/None)")
            states, linear = encoder_out.intermediate, self.ctc_src
        elif head == "tgt":
            if self.ctc_tgt is None:
                raise ValueError("this model has no target CTC head (ctc_tgt=False)")
            states, linear = encoder_out.states, self.ctc_tgt
        else:
            raise ValueError(f"head must be 'src' or 'tgt', got {head!r}")
        return torch.log_softmax(linear(self.ctc_dropout(states)).float(), dim=-1)

    # ------------------------------------------------------------------ decoder side
    def decode_teacher_forced(
        self,
        encoder_states: Tensor,
        encoder_lengths: Tensor,
        decoder_input: Tensor,
        return_attention: bool = False,
    ) -> DecoderOutput:
        """Teacher-forced decoding over (possibly modified, e.g. masked) encoder states.

        Args:
            encoder_states: (B, T', D).
            encoder_lengths: (B,) integer valid lengths, or bool (B, T') padding mask
                (True = padded).
            decoder_input: (B, I) long, ``[EOS, y_1 .. y_n]`` right-padded with ``pad_id``.
            return_attention: also return cross-attention weights (explicit softmax path).

        Returns:
            :class:`DecoderOutput` with logits (B, I, V) and, if asked, cross_attention
            (B, L_dec, H, I, T') (rows sum to 1; exactly 0 on padded frames).
        """
        mask = _as_padding_mask(encoder_states, encoder_lengths)
        logits, weights = self.decoder(decoder_input, encoder_states, mask, need_weights=return_attention)
        return DecoderOutput(logits=logits, cross_attention=weights)

    def encoder_occlusion(self, encoder_states: Tensor) -> Any:
        """SM^H's decoder over occluded copies of one utterance's encoder output.

        Args:
            encoder_states: (1, T', D) clean encoder output (unpadded).

        Returns:
            ``decode(keep, decoder_input)``: keep bool (B, T'), decoder_input (B, I) -> logits
            (B, I, V), the same as :meth:`decode_teacher_forced` of ``encoder_states * keep``
            (up to float rounding of the projections), with the cross-attention keys and values
            projected once here (:meth:`TransformerDecoder.occluded_cross_kvs`).
        """
        if encoder_states.dim() != 3 or encoder_states.size(0) != 1:
            raise ValueError(
                f"expected one utterance's encoder states (1, T', D), got {tuple(encoder_states.shape)}"
            )
        clean = self.decoder._project_encoder(encoder_states)

        def decode(keep: Tensor, decoder_input: Tensor) -> Tensor:
            if keep.dim() != 2 or keep.size(1) != encoder_states.size(1):
                raise ValueError(f"keep must be (B, {encoder_states.size(1)}), got {tuple(keep.shape)}")
            mask = torch.zeros(keep.shape, dtype=torch.bool, device=keep.device)  # no padded step
            kvs = self.decoder.occluded_cross_kvs(clean, keep)
            return self.decoder.forward_cross_kvs(decoder_input, kvs, mask)

        return decode

    def decode_step(
        self,
        encoder_states: Tensor,
        encoder_padding_mask: Tensor,
        decoder_input_prefix: Tensor,
        cache: DecoderCache | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, DecoderCache, Tensor | None]:
        """One incremental decoding step with a key/value cache.

        Positions beyond ``cache.length`` are computed (all of them when ``cache`` is
        None).  The last-position logits equal those of :meth:`decode_teacher_forced` on
        the same prefix.  For beam search reorder both ``encoder_states`` and the cache
        (:meth:`DecoderCache.reorder`) with the same index.

        Args:
            encoder_states: (B, T', D).
            encoder_padding_mask: bool (B, T') (True = padded) or (B,) integer lengths.
            decoder_input_prefix: (B, I) long, the full prefix (no padding).
            cache: cache from the previous step or None.
            return_attention: also return the cross-attention of the last query.

        Returns:
            ``(logits (B, V), cache, cross_attention (B, L_dec, H, T') | None)``.
        """
        mask = _as_padding_mask(encoder_states, encoder_padding_mask)
        return self.decoder.step(
            decoder_input_prefix, encoder_states, mask, cache, need_weights=return_attention
        )

    # ------------------------------------------------------------------ training
    def forward(self, features: Tensor, lengths: Tensor, decoder_input: Tensor) -> S2TOutput:
        """Training forward pass.

        Args:
            features: (B, T, n_mels) float.
            lengths: (B,) long.
            decoder_input: (B, I) long.

        Returns:
            :class:`S2TOutput` (logits (B, I, V), CTC log-probs (B, T', V) per head).
        """
        enc = self.encode(features, lengths)
        logits, _ = self.decoder(decoder_input, enc.states, enc.padding_mask)
        return S2TOutput(
            logits=logits,
            encoder_lengths=enc.lengths,
            encoder_padding_mask=enc.padding_mask,
            ctc_src_log_probs=self.ctc_log_probs(enc, "src") if self.ctc_src is not None else None,
            ctc_tgt_log_probs=self.ctc_log_probs(enc, "tgt") if self.ctc_tgt is not None else None,
        )

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (unique) parameters; tied weights are counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def count_parameters(dims: ModelDimensions) -> int:
    """Parameter count of ``S2TModel(dims)``, built on the meta device (no allocation)."""
    with torch.device("meta"):
        model = S2TModel(dims)
    return model.num_parameters()
