"""Greedy search of an :class:`~caspes.model.S2TModel`, and the chunking driver shared with beam search.

Conventions (fairseq's, as in training — :func:`caspes.train.data.build_target`):

* the decoder input starts with EOS used as BOS (``model.dims.eos_id``), followed by the
  *forced prefix* of the utterance (normally its ``<lang:xx>`` tag), then the generated tokens;
* the *target* of an utterance is ``prefix + generated`` (+ EOS when the model emits it);
* the maximum target length (prefix included, EOS excluded) is fairseq's
  ``max_len = min(int(max_len_a * T' + max_len_b), max_target_positions - 1)``; here ``T'`` is the
  utterance's own encoder length (fairseq multiplies ``a`` by the padded input length of the
  batch, which makes results depend on batching; with the default ``a = 0`` both agree).
  A row that reaches ``max_len`` stops as if EOS had been forced (fairseq does exactly that);
* like fairseq's ``SequenceGenerator``, PAD is never chosen, and EOS is not allowed as the very
  first target token (``min_len = 1``; irrelevant when a prefix is forced);
* rows are decoded in batches with the key/value cache (:meth:`S2TModel.decode_step`); a row that
  has finished is removed from the batch (its cache rows are dropped), so it cannot change.

Beam search (:func:`caspes.decode.beam.beam_search`) has the same inputs/outputs as
:func:`greedy_decode`; :func:`caspes.decode.run.decode_batch` dispatches on ``options.beam_size``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caspes.decode.options import DecodingOptions, max_target_length
from caspes.model.inference import as_batch, eval_mode, model_device_dtype, never_generated

__all__ = ["decode_in_chunks", "greedy_decode"]


def _check_prefix(prefix: Sequence[Sequence[int]], n: int, vocab: int, pad: int, eos: int) -> list[list[int]]:
    if len(prefix) != n:
        raise ValueError(f"prefix must have one entry per utterance ({n}), got {len(prefix)}")
    out = [[int(t) for t in p] for p in prefix]
    for p in out:
        for t in p:
            if not 0 <= t < vocab or t in (pad, eos):
                raise ValueError(f"forced prefix token {t} is PAD, EOS or outside [0, {vocab})")
    return out


# --------------------------------------------------------------------------- greedy search
def _greedy_chunk(
    model: Any,
    features: Tensor,
    lengths: Tensor,
    prefix: list[list[int]],
    options: DecodingOptions,
) -> list[list[int]]:
    dims = model.dims
    eos = dims.eos_id
    banned = never_generated(dims)
    device = features.device
    enc = model.encode(features, lengths)
    enc_lengths = enc.lengths.tolist()
    n = len(prefix)
    max_lens = [max_target_length(int(t), options, dims.max_target_positions) for t in enc_lengths]
    results: list[list[int]] = [[] for _ in range(n)]

    # Rows whose budget is used up by the forced prefix produce nothing.
    active = [i for i in range(n) if max_lens[i] > len(prefix[i])]
    if not active:
        return results
    sel = torch.tensor(active, dtype=torch.long, device=device)
    states = enc.states.index_select(0, sel)
    mask = enc.padding_mask.index_select(0, sel)
    # The prefix part common to all active rows goes in with the first step.
    common = min(len(prefix[i]) for i in active)
    tokens = torch.tensor([[eos, *prefix[i][:common]] for i in active], dtype=torch.long, device=device)
    width = max(len(prefix[i]) for i in active)
    forced = torch.full((len(active), max(width, 1)), -1, dtype=torch.long, device=device)
    for k, i in enumerate(active):
        if prefix[i]:
            forced[k, : len(prefix[i])] = torch.tensor(prefix[i], dtype=torch.long)
    row_max = torch.tensor([max_lens[i] for i in active], dtype=torch.long, device=device)
    rows = torch.tensor(active, dtype=torch.long, device=device)  # original index of each active row
    cache = None
    while True:
        logits, cache, _ = model.decode_step(states, mask, tokens, cache)
        logits = logits.float()
        logits[:, banned] = -torch.inf  # PAD and <s> (the CTC blank; an adapted model: its specials)
        pos = tokens.size(1) - 1  # index (in the target) of the token chosen now
        if pos == 0:
            logits[:, eos] = -torch.inf
        choice = logits.argmax(dim=-1)
        if pos < forced.size(1):
            is_forced = forced[:, pos] >= 0
            choice = torch.where(is_forced, forced[:, pos], choice)
        else:
            is_forced = torch.zeros_like(choice, dtype=torch.bool)
        tokens = torch.cat([tokens, choice.unsqueeze(1)], dim=1)
        ended_eos = choice.eq(eos) & ~is_forced
        ended = ended_eos | row_max.le(pos + 1)
        if bool(ended.any()):
            for k in ended.nonzero(as_tuple=True)[0].tolist():
                i = int(rows[k])
                stop = tokens.size(1) - 1 if bool(ended_eos[k]) else tokens.size(1)
                results[i] = tokens[k, 1 + len(prefix[i]) : stop].tolist()
            keep = (~ended).nonzero(as_tuple=True)[0]
            if keep.numel() == 0:
                break
            tokens, states, mask = tokens[keep], states[keep], mask[keep]
            forced, row_max, rows = forced[keep], row_max[keep], rows[keep]
            cache = cache.reorder(keep)
    return results


def decode_in_chunks(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions,
    lengths: Sequence[int] | Tensor | None,
    decode_chunk: Any,
    *extra: Any,
) -> list:
    """Shared driver of the searches: checks the inputs, then calls
    ``decode_chunk(model, features (b, t, F), lengths (b,), prefixes, options, *extra)`` on chunks of
    ``options.batch_size`` utterances (all at once when None), in eval and inference mode, and
    concatenates the per-utterance results."""
    if len(features) == 0:
        return []
    device, dtype = model_device_dtype(model)
    feats, lens = as_batch(features, lengths, device, dtype)
    n = feats.size(0)
    dims = model.dims
    if feats.size(-1) != dims.n_mels:
        raise ValueError(f"features have {feats.size(-1)} bins, the model expects {dims.n_mels}")
    prefixes = _check_prefix(prefix, n, dims.vocab_size, dims.pad_id, dims.eos_id)
    step = options.batch_size or n
    out: list = []
    with eval_mode(model), torch.inference_mode():
        for start in range(0, n, step):
            chunk_lens = lens[start : start + step]
            t = int(chunk_lens.max())
            out.extend(
                decode_chunk(
                    model,
                    feats[start : start + step, :t],
                    chunk_lens,
                    prefixes[start : start + step],
                    options,
                    *extra,
                )
            )
    return out


def greedy_decode(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions = DecodingOptions(),
    lengths: Sequence[int] | Tensor | None = None,
) -> list[list[int]]:
    """Greedy search.

    Args:
        model: an :class:`~caspes.model.S2TModel` (set to eval mode for the call, on its own
            device and dtype; inputs are moved there).
        features: list of (T_i, n_mels) arrays, or a padded (B, T, n_mels) tensor with ``lengths``
            (default: all ``T``).
        prefix: per utterance, the tokens forced after the EOS-as-BOS start, e.g. ``[[lang_id]]``
            (may be empty or differ in length between utterances; no PAD/EOS).
        options: :class:`DecodingOptions` (max length, batch size).
        lengths: (B,) valid frames when ``features`` is a tensor.

    Returns:
        Per utterance the generated ids after the forced prefix, without the final EOS.
    """
    return decode_in_chunks(model, features, prefix, options, lengths, _greedy_chunk)
