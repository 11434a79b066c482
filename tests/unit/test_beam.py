"""Unit tests for caspes.decode.beam (fairseq-style beam search)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from tinymodels import fake_model_dims, one_thread, tiny_model  # noqa: F401 - one_thread is a fixture
from torch import nn

from caspes.decode.beam import Hypothesis, beam_search, beam_search_nbest, block_repeated_ngrams
from caspes.decode.greedy import greedy_decode
from caspes.decode.options import DecodingOptions, max_target_length
from caspes.model import DecoderCache, EncoderOutput, S2TModel, lengths_to_padding_mask
from caspes.model.conformer import subsampled_lengths

N_MELS = 8
BOS, PAD, EOS = 0, 1, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model(seed: int, vocab: int = 8, d_model: int = 16, **overrides: object) -> S2TModel:
    return tiny_model(seed, vocab=vocab, n_mels=N_MELS, d_model=d_model, **overrides)


def _bias_token(model: S2TModel, token: int, strength: float) -> S2TModel:
    """Add ``strength * D / 2`` to the logit of ``token`` whatever the input.

    The final LayerNorm output has zero mean over features, so with a bias of 0.5 on every feature
    and an output row of ``strength`` on every feature, the token's logit gains ``strength * D/2``.
    """
    with torch.no_grad():
        model.decoder.final_norm.bias.fill_(0.5)
        model.decoder.output_projection.weight[token].fill_(strength)
    return model


def _features(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((t, N_MELS)) for t in lengths]


def _has_repeat(seq: list[int], n: int) -> bool:
    if n <= 0:
        return False
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


def _encode(model: S2TModel, feats: np.ndarray):
    with torch.no_grad():
        return model.encode(torch.from_numpy(feats).double().unsqueeze(0), torch.tensor([feats.shape[0]]))


def _rescore(model: S2TModel, enc, targets: list[list[int]], skip: int = 0) -> list[float]:
    """Sum of log-probs of each ``target + [EOS]`` (the first ``skip`` tokens not counted)."""
    if not targets:
        return []
    width = max(len(t) for t in targets) + 1
    dec = torch.full((len(targets), width), PAD)
    for i, t in enumerate(targets):
        dec[i, : len(t) + 1] = torch.tensor([EOS, *t])
    n = len(targets)
    with torch.no_grad():
        states, lengths = enc.states.expand(n, -1, -1), enc.lengths.expand(n)
        lp = torch.log_softmax(model.decode_teacher_forced(states, lengths, dec).logits, dim=-1)
    return [
        float(sum(lp[k, i, tok] for i, tok in enumerate([*t, EOS]) if i >= skip))
        for k, t in enumerate(targets)
    ]


def _brute_force(
    model: S2TModel, feats: np.ndarray, prefix: list[int], max_len: int, n: int, score_prefix: bool = True
) -> tuple[list[int], float]:
    """Best (generated tokens, normalised score) over every allowed hypothesis."""
    allowed = [t for t in range(model.dims.vocab_size) if t not in (BOS, PAD, EOS)]
    targets = [
        [*prefix, *gen]
        for size in range(0, max_len - len(prefix) + 1)
        for gen in itertools.product(allowed, repeat=size)
    ]
    targets = [t for t in targets if t and not _has_repeat(t, n)]
    scores = _rescore(model, _encode(model, feats), targets, 0 if score_prefix else len(prefix))
    norms = [s / (len(t) + 1) for s, t in zip(scores, targets)]
    best = int(np.argmax(norms))
    return targets[best][len(prefix) :], norms[best]


# ----------------------------------------------------------------------------- greedy equivalence
def test_beam_one_equals_greedy() -> None:
    lengths = [37, 20, 9, 50, 26, 13]
    prefix = [[4], [5], [4], [6, 7], [7], []]
    options = DecodingOptions(max_len_b=12, beam_size=1)
    model = _bias_token(_tiny_model(0), BOS, -4.0)  # greedy may not pick BOS (0); beam never does
    feats = _features(lengths, 1)
    greedy = greedy_decode(model, feats, prefix, options)
    lens = [len(g) + len(p) for g, p in zip(greedy, prefix)]
    assert any(n < 12 for n in lens) and any(n == 12 for n in lens)  # EOS-ended and capped rows
    assert all(BOS not in g for g in greedy)
    assert beam_search(model, feats, prefix, options, no_repeat_ngram_size=0) == greedy
    chunked = DecodingOptions(max_len_b=12, beam_size=1, batch_size=4)
    assert beam_search(model, feats, prefix, chunked, no_repeat_ngram_size=0) == greedy


# ----------------------------------------------------------------------------- exhaustive search
@pytest.mark.parametrize(
    ("prefix", "n", "score_prefix"),
    [([3], 0, True), ([3], 2, True), ([], 2, True), ([], 0, True), ([4], 0, False)],
)
def test_large_beam_finds_brute_force_optimum(prefix: list[int], n: int, score_prefix: bool) -> None:
    model = _tiny_model(11, vocab=5)  # a seed whose optimum depends on the input in every case
    feats = _features([23, 11, 30, 17], seed=5)
    options = DecodingOptions(max_len_b=4, beam_size=30)  # >= every candidate: exhaustive search
    expected = [_brute_force(model, f, prefix, 4, n, score_prefix) for f in feats]
    assert len({tuple(e[0]) for e in expected}) > 1  # the optimum depends on the input
    skip = 0 if score_prefix else len(prefix)
    for early_stop in (True, False):
        nbest = beam_search_nbest(
            model,
            feats,
            [prefix] * len(feats),
            options,
            no_repeat_ngram_size=n,
            early_stop=early_stop,
            score_prefix=score_prefix,
        )
        for f, hyps, (tokens, norm) in zip(feats, nbest, expected):
            assert hyps[0].tokens == tokens
            assert hyps[0].normalized_score == pytest.approx(norm, abs=1e-9)
            # every reported score is the teacher-forced score of that hypothesis
            rescored = _rescore(model, _encode(model, f), [[*prefix, *h.tokens] for h in hyps], skip)
            assert [h.score for h in hyps] == pytest.approx(rescored, abs=1e-9)
            for h in hyps:
                target = [*prefix, *h.tokens]
                assert h.length == len(target) + 1
                assert h.reached_max_len == (len(target) == 4)
                assert not _has_repeat(target, n)
            scores = [h.normalized_score for h in hyps]
            assert scores == sorted(scores, reverse=True)


def test_no_early_stop_is_never_worse() -> None:
    model = _tiny_model(11, vocab=8)
    feats = _features([23, 11, 30, 17, 40], seed=2)
    prefix = [[4]] * len(feats)
    options = DecodingOptions(max_len_b=10, beam_size=2)
    early = beam_search_nbest(model, feats, prefix, options, early_stop=True)
    full = beam_search_nbest(model, feats, prefix, options, early_stop=False)
    for e, f in zip(early, full):
        assert 1 <= len(e) <= 2 and 1 <= len(f) <= 2
        assert f[0].normalized_score >= e[0].normalized_score - 1e-12


# ----------------------------------------------------------------------------- n-gram blocking
def test_block_repeated_ngrams_helper() -> None:
    targets = torch.tensor([[5, 6, 7, 5, 6], [5, 6, 7, 5, 7]])
    lp = torch.zeros(2, 9)
    block_repeated_ngrams(targets, lp, 3)
    assert torch.isinf(lp[0, 7]) and int(torch.isinf(lp).sum()) == 1  # "5 6" was followed by 7
    lp = torch.zeros(2, 9)
    block_repeated_ngrams(targets, lp, 2, rows=torch.tensor([False, True]))
    assert int(torch.isinf(lp[0]).sum()) == 0 and torch.isinf(lp[1, 5]) and int(torch.isinf(lp).sum()) == 1
    lp = torch.zeros(2, 9)
    block_repeated_ngrams(targets, lp, 1)
    assert torch.isinf(lp[0, [5, 6, 7]]).all() and not torch.isinf(lp[0, 8])
    lp = torch.zeros(2, 9)
    block_repeated_ngrams(targets, lp, 6)  # too short for any 6-gram
    assert not torch.isinf(lp).any()


def test_no_repeated_ngram_in_any_hypothesis() -> None:
    model = _bias_token(_tiny_model(3, vocab=8), 5, 1.0)  # the model wants to say 5 forever
    feats = _features([30, 18, 25], 4)
    prefix = [[4], [4], []]
    options = DecodingOptions(max_len_b=12, beam_size=4)
    unblocked = beam_search(model, feats, prefix, options, no_repeat_ngram_size=0)
    assert all(_has_repeat([*p, *g], 2) for p, g in zip(prefix, unblocked))
    nbest = beam_search_nbest(model, feats, prefix, options, no_repeat_ngram_size=2)
    for p, hyps in zip(prefix, nbest):
        assert len(hyps) == 4
        for h in hyps:
            assert not _has_repeat([*p, *h.tokens], 2), h.tokens
    # the forced prefix counts: with prefix [5], "5 5" is allowed once, so 5 can never follow 5 again
    out = beam_search(model, feats[:1], [[5]], options, no_repeat_ngram_size=2)[0]
    assert not _has_repeat([5, *out], 2)


# ----------------------------------------------------------------------------- batching
def test_batched_equals_one_by_one() -> None:
    model = _tiny_model(0)
    lengths = [37, 20, 9, 50, 26]
    feats = _features(lengths, 1)
    prefix = [[4], [5], [], [4, 6], [7]]
    options = DecodingOptions(max_len_b=10, beam_size=3)
    batched = beam_search_nbest(model, feats, prefix, options)
    single = [beam_search_nbest(model, [f], [p], options)[0] for f, p in zip(feats, prefix)]
    for b, s in zip(batched, single):
        assert [h.tokens for h in b] == [h.tokens for h in s]
        assert [h.score for h in b] == pytest.approx([h.score for h in s], abs=1e-9)
    best = [s[0].tokens for s in single]
    assert beam_search(model, feats, prefix, DecodingOptions(max_len_b=10, beam_size=3, batch_size=2)) == best
    padded = torch.zeros(len(feats), max(lengths), N_MELS)
    for i, f in enumerate(feats):
        padded[i, : f.shape[0]] = torch.from_numpy(f)
    padded[2, lengths[2] :] = 7.0  # garbage in padded frames is ignored
    assert beam_search(model, padded.double(), prefix, options, lengths=torch.tensor(lengths)) == best


def test_eval_mode_for_the_call_and_training_flag_restored() -> None:
    model = _tiny_model(3, dropout=0.3)
    feats = _features([30, 18], 2)
    options = DecodingOptions(max_len_b=8, beam_size=2)
    expected = beam_search(model, feats, [[4], [5]], options)
    model.train()
    assert beam_search(model, feats, [[4], [5]], options) == expected
    assert model.training


# ----------------------------------------------------------------------------- scripted model
class _ScriptedModel(nn.Module):
    """Same logits for every row and step (token 5 best, EOS worst).

    The utterance index is the first feature value; every (utterance, decoder prefix) it is given
    is recorded.
    """

    def __init__(self, max_target_positions: int = 64, vocab: int = 10) -> None:
        super().__init__()
        self.dims = fake_model_dims(vocab, N_MELS, max_target_positions)
        self.weight = nn.Parameter(torch.zeros(1))
        self.logits = torch.linspace(0.0, -1.0, vocab)
        self.logits[5] = 1.0
        self.logits[EOS] = -20.0
        self.seen: list[list[tuple[int, list[int]]]] = []

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        out_lengths = subsampled_lengths(lengths)
        t = int(out_lengths.max())
        states = torch.zeros(features.size(0), t, 4, dtype=features.dtype)
        states[:, :, 0] = features[:, :1, 0]
        return EncoderOutput(
            states=states, lengths=out_lengths, padding_mask=lengths_to_padding_mask(out_lengths, t)
        )

    def decode_step(self, states, mask, prefix, cache=None, return_attention=False):
        utts = states[:, 0, 0].round().long().tolist()
        self.seen.append(list(zip(utts, prefix.tolist())))
        logits = self.logits.to(states.dtype).expand(prefix.size(0), -1).clone()
        return logits, DecoderCache(length=prefix.size(1)), None


def _utt_features(utt: int, frames: int) -> np.ndarray:
    x = np.zeros((frames, N_MELS))
    x[0, 0] = utt
    return x


def test_forced_prefix_first_and_max_length() -> None:
    model = _ScriptedModel()
    feats = [_utt_features(0, 40), _utt_features(1, 16), _utt_features(2, 24)]
    prefix = [[4, 6], [4], []]
    options = DecodingOptions(max_len_a=0.5, max_len_b=3, beam_size=3)
    nbest = beam_search_nbest(model, feats, prefix, options, no_repeat_ngram_size=0)
    # T' = ceil(T/4) = 10, 4, 6 -> max targets 8, 5, 6 (prefix included); EOS is never wanted
    for p, hyps, t_enc in zip(prefix, nbest, (10, 4, 6)):
        max_len = max_target_length(t_enc, options, 64)
        assert hyps[0].tokens == [5] * (max_len - len(p))
        assert all(h.reached_max_len and h.length == max_len + 1 for h in hyps)
    # every decoder input (dead beams included) starts with EOS and the utterance's forced prefix
    assert model.seen[0] == [(u, [EOS]) for u in (0, 0, 0, 1, 1, 1, 2, 2, 2)]
    for step in model.seen:
        for utt, row in step:
            assert row[0] == EOS and PAD not in row and BOS not in row
            assert row[1 : 1 + len(prefix[utt])] == prefix[utt][: len(row) - 1]
    # n-gram blocking with n=2: "5 5" once; best: three 5s (never adjacent twice) and two 3s
    out = beam_search(
        model, feats[:1], [[4]], DecodingOptions(max_len_b=6, beam_size=2), no_repeat_ngram_size=2
    )
    assert sorted(out[0]) == [3, 3, 5, 5, 5] and not _has_repeat([4, *out[0]], 2)
    # the prefix alone uses up the budget: nothing is generated
    assert beam_search(model, feats[1:2], [[4, 6, 7, 8, 9]], options) == [[]]
    # PAD, BOS never; EOS not first even when it is the best token
    model.logits[EOS] = 5.0
    assert beam_search(model, [feats[0]], [[]], DecodingOptions(max_len_b=5, beam_size=2)) == [[5]]
    assert beam_search(model, [feats[0]], [[]], DecodingOptions(max_len_b=5, beam_size=1)) == [[5]]
    # the cap at max_target_positions - 1
    model = _ScriptedModel(max_target_positions=6)
    out = beam_search(
        model, feats[:1], [[4]], DecodingOptions(max_len_b=200, beam_size=2), no_repeat_ngram_size=0
    )
    assert out == [[5] * 4]


def test_real_model_respects_max_length_and_specials() -> None:
    model = _bias_token(_tiny_model(5), EOS, -2.0)  # reluctant to stop
    feats = _features([40, 17, 9], 6)
    prefix = [[4], [5, 6], [7]]
    options = DecodingOptions(max_len_a=0.5, max_len_b=2, beam_size=3)
    with torch.no_grad():
        t_enc = model.output_lengths(torch.tensor([40, 17, 9])).tolist()
    nbest = beam_search_nbest(model, feats, prefix, options)
    assert any(h.reached_max_len for hyps in nbest for h in hyps)
    for p, hyps, t in zip(prefix, nbest, t_enc):
        max_len = max_target_length(t, options, model.dims.max_target_positions)
        for h in hyps:
            assert isinstance(h, Hypothesis)
            assert len(p) + len(h.tokens) <= max_len
            assert not {EOS, PAD, BOS} & set(h.tokens)
            assert h.reached_max_len == (len(p) + len(h.tokens) == max_len)
            assert math.isfinite(h.score) and h.score < 0


def test_real_model_capped_at_max_target_positions() -> None:
    model = _bias_token(_tiny_model(5, max_target_positions=8), EOS, -10.0)  # never wants to stop
    feats = _features([40, 17], 6)
    options = DecodingOptions(max_len_b=200, beam_size=3)
    nbest = beam_search_nbest(model, feats, [[4], []], options)  # decoder inputs reach 8 positions
    for p, hyps in zip([[4], []], nbest):
        assert hyps and all(h.reached_max_len and len(p) + len(h.tokens) == 7 for h in hyps)


def test_validation() -> None:
    model = _tiny_model(0)
    f = _features([20])
    with pytest.raises(ValueError):
        beam_search(model, f, [[EOS]], DecodingOptions(beam_size=2))
    with pytest.raises(ValueError):
        beam_search(model, f, [[4], [4]], DecodingOptions(beam_size=2))
    with pytest.raises(ValueError):
        beam_search(model, f, [[4]], DecodingOptions(beam_size=2), no_repeat_ngram_size=-1)
    assert beam_search(model, [], [], DecodingOptions(beam_size=2)) == []
