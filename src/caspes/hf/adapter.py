"""A Hugging Face speech encoder-decoder behind the protocol of :class:`caspes.model.S2TModel`.

What the rest of caspes calls on a model, and what the adapter does for it:

``encode(features (B, T, F), lengths)``
    Features are the model's own (:mod:`caspes.hf.features`), real frames only. Whisper's encoder
    takes a fixed window (``2 * max_source_positions`` frames, 30 s for released checkpoints): the
    adapter pads each utterance to it with the value the Whisper feature extractor gives silent
    padding, ``max(x) - 2`` (its log-mel floor) but at least -1.5; Speech2Text gets zero padding and
    an attention mask, as its extractor pads. :attr:`EncoderOutput.lengths` are the *real* encoder
    steps (``ceil(T / subsampling)``); Whisper's states keep the padded steps, because its decoder
    attends to them (the model is run as it was trained), but nothing downstream masks, counts or
    shows them.
``decode_teacher_forced(states, lengths, decoder_input, return_attention)``
    ``decoder_input[:, 0]`` is the study's start symbol (EOS used as BOS); the adapter replaces it
    with the model's ``decoder_start_token_id`` (Whisper ``<|startoftranscript|>``, Speech2Text
    ``</s>``). Cross-attention of every layer and head comes from eager attention, (B, L, H, I, T').
``decode_step(states, mask, prefix, cache)``
    Incremental decoding with the model's own key/value cache, reordered by the searches.

:meth:`HFSpeechModel.reference` fixes Whisper's padding value to the *clean* utterance's while its
masked copies are scored (an occluded input must not change the padding the model sees), and
:meth:`HFSpeechModel.occlusion_fill` is the value SPES occludes with: the utterance's per-bin mean
of the model's input features (0 after utterance CMVN, which is what SPES's 0 means for our fbank).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from caspes.model.conformer import EncoderOutput, lengths_to_padding_mask
from caspes.model.s2t import DecoderOutput

__all__ = ["HFDims", "HFCache", "HFSpeechModel", "whisper_pad_value"]

WHISPER_FLOOR = -1.5  # (log10(1e-10) + 4) / 4: the extractor's value of digital silence


@dataclass(frozen=True)
class HFDims:
    """What the searches and the explainers read from ``model.dims``.

    ``eos_id`` is the model's end-of-sequence id (also the start symbol of the study's decoder
    inputs); ``pad_id`` pads decoder batches and is never a valid input (Whisper's own pad id equals
    its EOS, so the adapter pads with ``<|startoftranscript|>``); ``suppress_ids`` are never
    generated (every special or added token but EOS: prompts are forced, text is generated).
    """

    n_mels: int
    vocab_size: int
    pad_id: int
    eos_id: int
    bos_id: int
    max_target_positions: int
    decoder_layers: int
    decoder_heads: int
    subsampling: int
    suppress_ids: tuple[int, ...]
    input_frames: int | None = None  # fixed encoder window (Whisper), None = any length


def whisper_pad_value(features: Tensor) -> Tensor:
    """(..., T, F) real frames -> (...) the Whisper extractor's padding value for them."""
    return (features.amax(dim=(-2, -1)) - 2.0).clamp_min(WHISPER_FLOOR)


class HFCache:
    """The model's encoder-decoder key/value cache with the interface the searches use."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def length(self) -> int:
        return int(self.inner.get_seq_length())

    def reorder(self, index: Tensor) -> HFCache:
        self.inner.reorder_cache(index)
        return self


class HFSpeechModel(nn.Module):
    """Adapter of a loaded ``*ForConditionalGeneration`` speech model (eager attention)."""

    def __init__(self, hf_model: nn.Module, card: dict[str, Any], dims: HFDims) -> None:
        super().__init__()
        self.hf = hf_model
        self.card = card
        self.dims = dims
        self.fixed_window = bool(card.get("fixed_window"))
        self.utterance_normalised = bool(card.get("utterance_normalised"))
        self.start_id = int(hf_model.config.decoder_start_token_id)
        self._reference_pad: Tensor | None = None
        self._encoder = hf_model.get_encoder()
        self._decoder = hf_model.get_decoder()
        self._output = hf_model.get_output_embeddings()

    # ------------------------------------------------------------------ inputs
    def output_lengths(self, lengths: Tensor) -> Tensor:
        f = self.dims.subsampling
        return torch.div(lengths + f - 1, f, rounding_mode="floor")

    def occlusion_fill(self, features: Tensor) -> Tensor:
        """(T, F) clean real frames -> (F,) the value occluded cells take: their per-bin mean."""
        return features.float().mean(dim=0).to(features.dtype)

    @contextlib.contextmanager
    def reference(self, features: Tensor) -> Iterator[None]:
        """Within the block every encoded input is padded as the clean ``features`` (T, F) are."""
        previous = self._reference_pad
        self._reference_pad = whisper_pad_value(features) if self.fixed_window else None
        try:
            yield
        finally:
            self._reference_pad = previous

    def _model_input(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        b, t, f = features.shape
        if f != self.dims.n_mels:
            raise ValueError(f"features have {f} bins, the model expects {self.dims.n_mels}")
        valid = ~lengths_to_padding_mask(lengths.to(features.device), t)  # (B, T)
        if not self.fixed_window:
            x = features * valid.unsqueeze(-1).to(features.dtype)
            return x, valid.long()
        window = int(self.dims.input_frames or 0)
        longest = int(lengths.max())
        if longest > window:
            raise ValueError(
                f"an utterance of {longest} frames exceeds the model's {window}-frame input window "
                f"({window / 100:g} s); Whisper takes at most 30 s (split longer audio)"
            )
        if self._reference_pad is not None:
            pad = self._reference_pad.to(features.dtype).expand(b)
        else:
            masked = torch.where(valid.unsqueeze(-1), features, torch.full_like(features, -math.inf))
            pad = whisper_pad_value(masked)
        x = pad.view(b, 1, 1).expand(b, window, f).clone()
        x[:, :t] = torch.where(valid.unsqueeze(-1), features, x[:, :t])
        return x, None

    # ------------------------------------------------------------------ encoder
    def encode(self, features: Tensor, lengths: Tensor) -> EncoderOutput:
        x, mask = self._model_input(features, lengths)
        if self.fixed_window:  # Whisper: (B, F, N)
            states = self._encoder(input_features=x.transpose(1, 2)).last_hidden_state
        else:  # Speech2Text: (B, T, F) with its attention mask
            states = self._encoder(input_features=x, attention_mask=mask).last_hidden_state
        out_lengths = self.output_lengths(lengths.to(states.device))
        if not self.fixed_window:  # the encoder's own output length (its convolutions)
            states = states[:, : int(out_lengths.max())]
        padding = lengths_to_padding_mask(out_lengths, states.size(1))
        return EncoderOutput(states=states, lengths=out_lengths, padding_mask=padding)

    def _encoder_mask(self, states: Tensor, lengths_or_mask: Tensor) -> dict[str, Tensor]:
        """The decoder's attention mask over encoder steps (none for Whisper: it attends to every step)."""
        if self.fixed_window:
            return {}
        if lengths_or_mask.dtype == torch.bool:
            return {"encoder_attention_mask": (~lengths_or_mask).long()}
        valid = ~lengths_to_padding_mask(lengths_or_mask.to(states.device), states.size(1))
        return {"encoder_attention_mask": valid.long()}

    def _decoder_ids(self, decoder_input: Tensor) -> Tensor:
        ids = decoder_input.clone()
        ids[:, 0] = self.start_id
        return ids

    # ------------------------------------------------------------------ decoder
    def decode_teacher_forced(
        self,
        encoder_states: Tensor,
        encoder_lengths: Tensor,
        decoder_input: Tensor,
        return_attention: bool = False,
    ) -> DecoderOutput:
        out = self._decoder(
            input_ids=self._decoder_ids(decoder_input),
            encoder_hidden_states=encoder_states,
            **self._encoder_mask(encoder_states, encoder_lengths),
            output_attentions=return_attention,
            use_cache=False,
        )
        logits = self._output(out.last_hidden_state)
        weights = torch.stack(out.cross_attentions, dim=1) if return_attention else None
        return DecoderOutput(logits=logits, cross_attention=weights)

    def decode_step(
        self,
        encoder_states: Tensor,
        encoder_padding_mask: Tensor,
        decoder_input_prefix: Tensor,
        cache: HFCache | None = None,
        return_attention: bool = False,
    ) -> tuple[Tensor, HFCache, Tensor | None]:
        if cache is None:
            from transformers.cache_utils import DynamicCache, EncoderDecoderCache

            cache = HFCache(EncoderDecoderCache(DynamicCache(), DynamicCache()))
        done = cache.length
        ids = self._decoder_ids(decoder_input_prefix)[:, done:]
        out = self._decoder(
            input_ids=ids,
            encoder_hidden_states=encoder_states,
            **self._encoder_mask(encoder_states, encoder_padding_mask),
            past_key_values=cache.inner,
            use_cache=True,
            output_attentions=return_attention,
        )
        cache.inner = out.past_key_values
        logits = self._output(out.last_hidden_state[:, -1])
        attention = torch.stack(out.cross_attentions, dim=1)[:, :, :, -1] if return_attention else None
        return logits, cache, attention

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.hf.parameters() if p.requires_grad or not trainable_only)
