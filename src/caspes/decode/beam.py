"""Beam search for an :class:`~caspes.model.S2TModel`, after fairseq's ``SequenceGenerator``.

Same conventions as :mod:`caspes.decode` (greedy search): the decoder input is
``[EOS (as BOS), forced prefix (normally <lang:xx>), generated ...]``, the *target* of a
hypothesis is ``prefix + generated + [EOS]``, the maximum target length ``max_len`` (prefix
included, EOS excluded) is :func:`caspes.decode.options.max_target_length` of the utterance's own encoder
length ``T'``.

What it does (fairseq ``SequenceGenerator`` with its default settings unless stated):

* utterances are searched together (``options.batch_size`` utterances per chunk), ``K =
  beam_size`` hypotheses each, all in one decoder batch of ``B * K`` rows using the key/value
  cache; after every step the cache is reordered to the surviving hypotheses
  (:meth:`~caspes.model.DecoderCache.reorder`) and utterances that are done leave the batch;
* a hypothesis' score is the sum of its tokens' log-probabilities, ``log_softmax`` of the logits
  in at least float32 (a float64 model is scored in float64), over the *whole* vocabulary
  (banning a token does not renormalise, as in fairseq);
* PAD and BOS (id 0, ``<s>``, never a target) are never generated; EOS is not allowed as the very
  first target token (fairseq ``min_len = 1``);
* forced prefix tokens are not searched: at a forced position every hypothesis takes the forced
  token.  Like fairseq's ``prefix_tokens`` their log-probability is part of the score (the same
  constant for every hypothesis of the utterance, so it only matters through the length
  normalisation); ``score_prefix=False`` counts them as 0 instead;
* no-repeat-n-gram blocking (``no_repeat_ngram_size = n``, fairseq ``--no-repeat-ngram-size``,
  0 disables it): a token that would complete an n-gram already present in the hypothesis is
  banned; the forced prefix is part of the hypothesis (its n-grams count), forced tokens and the
  forced EOS are never blocked;
* at each step the ``2K`` best (hypothesis, token) candidates are taken; EOS candidates among the
  first ``K`` (with a finite score) are *finished*, the first ``K`` non-EOS candidates become the
  next hypotheses.  A hypothesis whose target reaches ``max_len`` tokens gets a forced EOS (its
  real EOS log-probability is added, as fairseq does); so a finished hypothesis has at most
  ``max_len`` target tokens before EOS, and the search of an utterance always ends at step
  ``max_len``.  When the forced prefix alone reaches ``max_len`` the hypothesis is
  ``prefix[:max_len]`` + EOS and nothing is generated (as in greedy search);
* stopping (``early_stop``):

  - ``True`` (default, fairseq ``SequenceGenerator``): an utterance is done as soon as it has
    ``K`` finished hypotheses (the first ``K`` in the order they finish), even if an active
    hypothesis could still end with a better normalised score;
  - ``False`` (fairseq's former ``--no-early-stop``): the search goes on until the worst of the
    ``K`` best finished hypotheses cannot be beaten by any active one: with scores ``s <= 0`` and
    ``len_penalty >= 0`` the best an active hypothesis can reach is ``s / (max_len + 1) **
    len_penalty``; a better new finished hypothesis replaces the worst kept one.  The search path
    is the same as with ``True`` up to that point, so its best is never worse;

* final ranking by ``score / length ** len_penalty`` where ``length`` counts the whole target
  including the forced prefix and EOS (fairseq ``normalize_scores`` with ``lenpen = 1``: length of
  the target incl. EOS); ties keep finishing order.

Differences from fairseq that cannot change results with its defaults: the maximum length uses
the utterance's own ``T'`` (see :mod:`caspes.decode`); a hypothesis never reaches the decoder with
padding.  Greedy search (:func:`caspes.decode.greedy.greedy_decode`) bans neither BOS nor repeated
n-grams, so ``beam_size=1`` reproduces it exactly with ``no_repeat_ngram_size=0`` whenever greedy
does not pick id 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caspes.decode.greedy import decode_in_chunks
from caspes.decode.options import DecodingOptions, max_target_length
from caspes.model.inference import never_generated

__all__ = ["Hypothesis", "block_repeated_ngrams", "beam_search_nbest", "beam_search"]


@dataclass(frozen=True)
class Hypothesis:
    """A finished hypothesis.

    Attributes:
        tokens: generated ids after the forced prefix, without EOS.
        score: sum of the log-probabilities of the target tokens (forced prefix included unless
            ``score_prefix=False``, EOS included).
        length: target length ``len(prefix) + len(tokens) + 1`` (EOS included).
        normalized_score: ``score / length ** len_penalty`` (the ranking key).
        reached_max_len: the EOS was forced because the target reached ``max_len`` tokens.
    """

    tokens: list[int]
    score: float
    length: int
    normalized_score: float
    reached_max_len: bool


def block_repeated_ngrams(targets: Tensor, lprobs: Tensor, n: int, rows: Tensor | None = None) -> Tensor:
    """Ban (set to ``-inf`` in place) every next token that would repeat an n-gram.

    Args:
        targets: (R, P) long, the target tokens of each hypothesis so far (forced prefix included,
            without the decoder's leading EOS).
        lprobs: (R, V) float, next-token scores; modified in place and returned.
        n: n-gram size (``<= 0``: nothing is banned).
        rows: optional bool (R,) selecting the rows to block (default all).

    Returns:
        ``lprobs``.
    """
    r, p = targets.shape
    if n <= 0 or p < n or r == 0:
        return lprobs
    if n == 1:
        match = torch.ones(r, p, dtype=torch.bool, device=targets.device)
        following = targets
    else:
        # windows of n-1 tokens starting at j = 0 .. p-n, each followed by token j+n-1
        windows = targets[:, : p - 1].unfold(1, n - 1, 1)  # (R, p-n+1, n-1)
        last = targets[:, p - n + 1 :]  # (R, n-1)
        match = windows.eq(last.unsqueeze(1)).all(dim=-1)  # (R, p-n+1)
        following = targets[:, n - 1 :]  # (R, p-n+1)
    if rows is not None:
        match = match & rows.unsqueeze(1)
    idx_r, idx_c = match.nonzero(as_tuple=True)
    if idx_r.numel():
        lprobs[idx_r, following[idx_r, idx_c]] = -math.inf
    return lprobs


class _Finished:
    """The kept finished hypotheses of one utterance (at most ``k``)."""

    def __init__(self, k: int, early_stop: bool) -> None:
        self.k = k
        self.early_stop = early_stop
        self.hyps: list[Hypothesis] = []

    def add(self, hyp: Hypothesis) -> None:
        if len(self.hyps) < self.k:
            self.hyps.append(hyp)
        elif not self.early_stop:
            worst = min(range(len(self.hyps)), key=lambda i: self.hyps[i].normalized_score)
            if hyp.normalized_score > self.hyps[worst].normalized_score:
                del self.hyps[worst]
                self.hyps.append(hyp)

    def worst(self) -> float:
        return min(h.normalized_score for h in self.hyps)

    def ranked(self) -> list[Hypothesis]:
        return sorted(self.hyps, key=lambda h: h.normalized_score, reverse=True)  # stable


def _beam_chunk(
    model: Any,
    features: Tensor,
    lengths: Tensor,
    prefix: list[list[int]],
    options: DecodingOptions,
    no_repeat_ngram_size: int,
    len_penalty: float,
    early_stop: bool,
    score_prefix: bool,
) -> list[list[Hypothesis]]:
    dims = model.dims
    eos = dims.eos_id
    k = options.beam_size
    device = features.device
    enc = model.encode(features, lengths)
    n_utt = len(prefix)
    max_lens = [max_target_length(int(t), options, dims.max_target_positions) for t in enc.lengths.tolist()]
    finished = [_Finished(k, early_stop) for _ in range(n_utt)]

    banned = never_generated(dims)
    width = max(1, max(len(p) for p in prefix))
    forced = torch.full((n_utt, width), -1, dtype=torch.long, device=device)
    for i, p in enumerate(prefix):
        if p:
            forced[i, : len(p)] = torch.tensor(p, dtype=torch.long)
    max_len = torch.tensor(max_lens, dtype=torch.long, device=device)
    utt = torch.arange(n_utt, device=device)  # original index of each utterance still searched

    rows = torch.arange(n_utt, device=device).repeat_interleave(k)
    states = enc.states.index_select(0, rows)
    mask = enc.padding_mask.index_select(0, rows)
    tokens = torch.full((n_utt * k, 1), eos, dtype=torch.long, device=device)
    score_dtype = torch.promote_types(enc.states.dtype, torch.float32)  # fp32, or fp64 for a fp64 model
    scores = torch.full((n_utt, k), -math.inf, dtype=score_dtype, device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first one is alive
    cache = None
    pos = 0  # target position predicted at this step (= number of target tokens so far)
    while True:
        logits, cache, _ = model.decode_step(states, mask, tokens, cache)
        raw = torch.log_softmax(logits.to(score_dtype), dim=-1)
        b = scores.size(0)
        vocab = raw.size(-1)
        lp = raw.clone()
        lp[:, banned] = -math.inf
        if pos == 0:
            lp[:, eos] = -math.inf  # min_len = 1

        at_max = max_len.le(pos)  # (b,) EOS forced now
        forced_tok = forced[:, pos] if pos < forced.size(1) else torch.full_like(max_len, -1)
        is_forced = forced_tok.ge(0) & ~at_max
        force_row = (at_max | is_forced).repeat_interleave(k)
        if no_repeat_ngram_size > 0:
            block_repeated_ngrams(tokens[:, 1:], lp, no_repeat_ngram_size, ~force_row)
        if bool(force_row.any()):
            tok = torch.where(at_max, torch.full_like(forced_tok, eos), forced_tok).clamp(min=0)
            tok = tok.repeat_interleave(k).unsqueeze(1)
            val = raw.gather(1, tok)
            if not score_prefix:
                val = torch.where(at_max.repeat_interleave(k).unsqueeze(1), val, torch.zeros_like(val))
            only = torch.full_like(lp, -math.inf).scatter(1, tok, val)
            lp = torch.where(force_row.unsqueeze(1), only, lp)

        cand = (lp.view(b, k, vocab) + scores.unsqueeze(-1)).view(b, k * vocab)
        top_s, top_i = cand.topk(2 * k, dim=1)  # sorted, best first
        cand_beam = top_i.div(vocab, rounding_mode="floor")
        cand_tok = top_i.remainder(vocab)
        is_eos = cand_tok.eq(eos)

        # finish EOS candidates among the first K (finite scores only)
        fin = is_eos[:, :k] & torch.isfinite(top_s[:, :k])
        if bool(fin.any()):
            fb, fc = fin.nonzero(as_tuple=True)  # row-major: per utterance in candidate order
            fin_rows = fb * k + cand_beam[fb, fc]
            fin_tokens = tokens.index_select(0, fin_rows)[:, 1:].tolist()
            fin_scores = top_s[fb, fc].tolist()
            fin_utt = utt[fb].tolist()
            fin_max = at_max[fb].tolist()
            length = pos + 1
            for u, target, s, hit in zip(fin_utt, fin_tokens, fin_scores, fin_max):
                finished[u].add(
                    Hypothesis(
                        tokens=target[len(prefix[u]) :],
                        score=s,
                        length=length,
                        normalized_score=s / length**len_penalty,
                        reached_max_len=bool(hit),
                    )
                )

        # next hypotheses: the first K non-EOS candidates (there are at least K: <= 1 EOS per beam)
        order = torch.arange(2 * k, device=device).expand(b, 2 * k)
        key = torch.where(is_eos, order + 2 * k, order)
        act = key.topk(k, dim=1, largest=False, sorted=True).indices
        new_scores = top_s.gather(1, act)
        new_beam = cand_beam.gather(1, act)
        new_tok = cand_tok.gather(1, act)
        # dead hypotheses (score -inf, e.g. the copies of a forced step) mirror the best one, so
        # that the decoder only ever sees valid prefixes (never PAD/BOS)
        dead = ~torch.isfinite(new_scores)
        new_beam = torch.where(dead, new_beam[:, :1], new_beam)
        new_tok = torch.where(dead, new_tok[:, :1], new_tok)

        best_active = new_scores.max(dim=1).values  # -inf when no hypothesis is alive
        done = at_max | ~torch.isfinite(best_active)
        done_list = done.tolist()
        utt_list = utt.tolist()
        best_list = best_active.tolist()
        max_list = max_len.tolist()
        for j, u in enumerate(utt_list):
            if done_list[j] or len(finished[u].hyps) < k:
                continue
            if early_stop:
                done_list[j] = True
            else:
                s = best_list[j]
                bound = max(s / (pos + 2) ** len_penalty, s / (max_list[j] + 1) ** len_penalty)
                done_list[j] = finished[u].worst() >= bound
        keep = torch.tensor([j for j, d in enumerate(done_list) if not d], dtype=torch.long, device=device)
        if keep.numel() == 0:
            break
        reorder = (keep.unsqueeze(1) * k + new_beam.index_select(0, keep)).view(-1)
        tokens = torch.cat(
            [tokens.index_select(0, reorder), new_tok.index_select(0, keep).view(-1, 1)], dim=1
        )
        scores = new_scores.index_select(0, keep)
        states = states.index_select(0, reorder)
        mask = mask.index_select(0, reorder)
        cache = cache.reorder(reorder)
        forced, max_len, utt = forced[keep], max_len[keep], utt[keep]
        pos += 1
    return [f.ranked() for f in finished]


def beam_search_nbest(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions = DecodingOptions(beam_size=5),
    lengths: Sequence[int] | Tensor | None = None,
    no_repeat_ngram_size: int = 5,
    len_penalty: float = 1.0,
    early_stop: bool = True,
    score_prefix: bool = True,
) -> list[list[Hypothesis]]:
    """Beam search returning up to ``beam_size`` finished hypotheses per utterance, best first.

    Args: as :func:`beam_search`, plus

        len_penalty: ranking by ``score / length ** len_penalty`` (fairseq ``--lenpen``).
        early_stop: stopping rule (module docstring): True = fairseq (stop at ``beam_size``
            finished hypotheses), False = until no active hypothesis can beat them.
        score_prefix: count the forced prefix tokens' log-probabilities in the score (fairseq).
    """
    if no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be >= 0, got {no_repeat_ngram_size}")
    if not early_stop and len_penalty < 0:
        raise ValueError("early_stop=False needs len_penalty >= 0 (for the score bound)")
    return decode_in_chunks(
        model,
        features,
        prefix,
        options,
        lengths,
        _beam_chunk,
        no_repeat_ngram_size,
        len_penalty,
        early_stop,
        score_prefix,
    )


def beam_search(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions = DecodingOptions(beam_size=5),
    lengths: Sequence[int] | Tensor | None = None,
    no_repeat_ngram_size: int = 5,
) -> list[list[int]]:
    """Beam search (fairseq ``SequenceGenerator`` defaults, see the module docstring).

    Args:
        model: an :class:`~caspes.model.S2TModel` (eval mode and inference mode for the call; inputs
            are moved to its device and dtype).
        features: list of (T_i, n_mels) arrays, or a padded (B, T, n_mels) tensor with ``lengths``.
        prefix: per utterance the tokens forced after the EOS-as-BOS start, e.g. ``[[lang_id]]``.
        options: :class:`~caspes.decode.options.DecodingOptions` (``beam_size``, max length, batch size).
        lengths: (B,) valid frames when ``features`` is a tensor.
        no_repeat_ngram_size: n-gram blocking size (0: off).

    Returns:
        Per utterance the best hypothesis' ids after the forced prefix, without EOS.
    """
    nbest = beam_search_nbest(model, features, prefix, options, lengths, no_repeat_ngram_size)
    return [hyps[0].tokens if hyps else [] for hyps in nbest]
