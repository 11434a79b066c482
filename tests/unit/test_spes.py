"""Unit tests for caspes.explain.spes (SPES occlusion saliency SM^X and SM^H, spec §1-§3)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tinymodels import fake_model_dims, one_thread, tiny_model  # noqa: F401 - one_thread is a fixture
from torch import nn

import caspes.explain.spes as spes
from caspes.explain.maps import normalize_per_token
from caspes.explain.segment import SegmentationOptions, segment_levels
from caspes.explain.spes import (
    OcclusionOptions,
    auto_batch_size,
    clean_log_probs,
    explain_encoder,
    explain_input,
    kl_rows,
    masks_per_level,
    utterance_seed,
)
from caspes.model import S2TModel
from caspes.model.inference import compile_stacks

pytestmark = pytest.mark.usefixtures("one_thread")

EOS = 2
N_MELS = 8
T = 24
DEC = [EOS, 4, 7, 5, 3]  # I = 5 rows


# --------------------------------------------------------------------------- helpers
def _model(seed: int = 0) -> S2TModel:
    return tiny_model(seed, vocab=10, n_mels=N_MELS)


def _features(t: int = T, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((t, N_MELS))


def _levels(t: int = T, f: int = N_MELS) -> list[np.ndarray]:
    """Three hand-made segmentations: 4x2 blocks, 8 arbitrary (non-contiguous) labels, 3 time bands."""
    tt, ff = np.meshgrid(np.arange(t), np.arange(f), indexing="ij")
    blocks = (tt // 4) * math.ceil(f / 2) + ff // 2
    scattered = np.random.default_rng(5).integers(0, 8, size=(t, f))
    scattered[0, :8] = np.arange(8)  # all 8 labels used
    bands = np.minimum(tt * 3 // t, 2)
    return [blocks.astype(np.int32), scattered.astype(np.int16), bands.astype(np.int64)]


def _generator(seed: int, uid: str) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(utterance_seed(seed, uid))


def _kl64(clean: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Hand-written float64 KL(P || Q) per row."""
    return (clean.exp() * (clean - log_q)).sum(-1)


def _naive_input(model, x, dec, levels, n_masks, p, seed, uid, fp32_kl=True):
    """Reference SM^X: one mask at a time, full (T, F) masks, A[i,t,f] += s*D, C += D, A / C."""
    per_level = n_masks // len(levels)
    gen = _generator(seed, uid)
    xt = torch.as_tensor(x, dtype=torch.float64)
    t, f = xt.shape
    d = torch.tensor([dec])
    with torch.no_grad():
        enc = model.encode(xt[None], torch.tensor([t]))
        logits = model.decode_teacher_forced(enc.states, enc.lengths, d).logits[0]
        clean = torch.log_softmax(logits.float() if fp32_kl else logits, dim=-1)
        num = torch.zeros(len(dec), t, f, dtype=torch.float64)
        den = torch.zeros(t, f, dtype=torch.float64)
        for lab in levels:
            labels = torch.as_tensor(np.asarray(lab, dtype=np.int64))
            keep = torch.rand(per_level, int(labels.max()) + 1, generator=gen) >= p
            for m in range(per_level):
                mask = keep[m][labels]  # (T, F) bool, True = kept
                e = model.encode((xt * mask.double())[None], torch.tensor([t]))
                out = model.decode_teacher_forced(e.states, e.lengths, d).logits
                if fp32_kl:
                    s = kl_rows(clean, torch.log_softmax(out.float(), dim=-1))[0].double()
                else:
                    s = _kl64(clean, torch.log_softmax(out[0], dim=-1))
                occluded = (~mask).double()
                num += s[:, None, None] * occluded
                den += occluded
    sal = torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))
    return sal.numpy(), den.numpy()


def _naive_encoder(model, x, dec, n_masks, p, seed, uid, fp32_kl=True):
    """Reference SM^H: encoder once, zero whole encoder steps one mask at a time."""
    gen = _generator(seed, uid)
    xt = torch.as_tensor(x, dtype=torch.float64)
    d = torch.tensor([dec])
    with torch.no_grad():
        enc = model.encode(xt[None], torch.tensor([xt.size(0)]))
        logits = model.decode_teacher_forced(enc.states, enc.lengths, d).logits[0]
        clean = torch.log_softmax(logits.float() if fp32_kl else logits, dim=-1)
        t_enc = enc.states.size(1)
        keep = torch.rand(n_masks, t_enc, generator=gen) >= p
        num = torch.zeros(len(dec), t_enc, dtype=torch.float64)
        den = torch.zeros(t_enc, dtype=torch.float64)
        for m in range(n_masks):
            states = enc.states * keep[m].double()[None, :, None]
            out = model.decode_teacher_forced(states, enc.lengths, d).logits
            if fp32_kl:
                s = kl_rows(clean, torch.log_softmax(out.float(), dim=-1))[0].double()
            else:
                s = _kl64(clean, torch.log_softmax(out[0], dim=-1))
            occluded = (~keep[m]).double()
            num += s[:, None] * occluded
            den += occluded
    sal = torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))
    return sal.numpy(), den.numpy()


# --------------------------------------------------------------------------- small pieces
def test_utterance_seed_stable_and_distinct() -> None:
    s = utterance_seed(1, "utt_001")
    assert s == utterance_seed(1, "utt_001")
    assert isinstance(s, int) and 0 <= s < 2**63
    seeds = {utterance_seed(seed, uid) for seed in (0, 1, 2) for uid in ("a", "b", "utt_001", "utt_010")}
    assert len(seeds) == 12
    # fixed across runs and machines (sha256 of "seed:uid")
    import hashlib

    digest = hashlib.sha256(b"7:x").digest()
    assert utterance_seed(7, "x") == int.from_bytes(digest[:8], "little") & (2**63 - 1)
    assert utterance_seed(np.int64(7), "x") == utterance_seed(7, "x")  # type: ignore[arg-type]


def test_masks_per_level() -> None:
    assert masks_per_level(20000, 3) == 6666
    assert masks_per_level(20000, 1) == 20000
    assert masks_per_level(3, 3) == 1
    assert masks_per_level(8, 3) == 2
    with pytest.raises(ValueError):
        masks_per_level(2, 3)
    with pytest.raises(ValueError):
        masks_per_level(10, 0)


def test_occlusion_options_validation() -> None:
    opts = OcclusionOptions()
    assert (opts.n_masks, opts.p, opts.seed, opts.batch_size) == (20000, 0.5, 1, None)
    for bad in (dict(n_masks=0), dict(p=-0.1), dict(p=1.5), dict(batch_size=0), dict(batch_frames=0)):
        with pytest.raises(ValueError):
            OcclusionOptions(**bad)  # type: ignore[arg-type]


def test_kl_rows_hand_computation() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], dtype=torch.float64)
    q = torch.tensor(
        [[[0.5, 0.3, 0.2], [0.25, 0.25, 0.5]], [[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]]], dtype=torch.float64
    )  # (B=2, I=2, V=3)
    kl = kl_rows(p.log(), q.log())
    assert kl.dtype == torch.float32 and kl.shape == (2, 2)
    hand = np.zeros((2, 2))
    for b in range(2):
        for i in range(2):
            hand[b, i] = sum(
                p[i, v].item() * (math.log(p[i, v].item()) - math.log(q[b, i, v].item())) for v in range(3)
            )
    np.testing.assert_allclose(kl.numpy(), hand, rtol=1e-6, atol=1e-7)
    assert hand[0, 0] == pytest.approx(
        0.7 * math.log(0.7 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.1 * math.log(0.1 / 0.2)
    )
    assert kl[0, 1].item() == 0.0  # identical rows
    # random distributions: >= 0, exactly 0 for identical log-probs, zero-probability entries ok
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(4, 11, generator=g), -1)
    lq = torch.log_softmax(torch.randn(6, 4, 11, generator=g), -1)
    assert (kl_rows(lp, lq) >= 0).all()
    assert (kl_rows(lp, lp.expand(3, -1, -1)) == 0).all()
    # very peaked but finite clean distributions (what log_softmax of finite logits gives)
    peaked = torch.log_softmax(torch.tensor([[0.0, -200.0, 5.0]]), -1)
    got = kl_rows(peaked, torch.log(torch.tensor([[[0.2, 0.4, 0.4]]])))
    assert torch.isfinite(got).all() and got.item() > 0


def test_kl_rows_zero_probability_in_clean_distribution() -> None:
    with_zero = torch.log(torch.tensor([[0.0, 0.5, 0.5]]))
    got = kl_rows(with_zero, torch.log(torch.tensor([[[0.2, 0.4, 0.4]]])))
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(math.log(0.5 / 0.4), rel=1e-6)


def test_normalize_per_token_three_d() -> None:
    rng = np.random.default_rng(0)
    sal = rng.gamma(2.0, 0.01, size=(4, 6, 5))
    sal[2] = 0.37  # constant row
    sal[3, 1, 1] = 5.0  # outlier
    out = normalize_per_token(sal)
    assert out.dtype == np.float32 and out.shape == sal.shape
    for i in (0, 1, 3):
        assert out[i].min() == 0.0 and out[i].max() == 1.0
        row = sal[i]
        np.testing.assert_allclose(out[i], (row - row.min()) / (row.max() - row.min()), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out[2], np.zeros((6, 5), dtype=np.float32))
    # per row, not over the whole tensor: scaling one row does not change the others
    scaled = sal.copy()
    scaled[0] *= 1000.0
    np.testing.assert_allclose(normalize_per_token(scaled), out, rtol=0, atol=1e-6)
    # torch input gives the same
    np.testing.assert_array_equal(normalize_per_token(torch.from_numpy(sal)), out)


def test_normalize_per_token_two_d() -> None:
    sal = np.array([[0.0, 2.0, 1.0, 4.0], [3.0, 3.0, 3.0, 3.0], [-1.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    out = normalize_per_token(sal)
    np.testing.assert_allclose(out, [[0, 0.5, 0.25, 1], [0, 0, 0, 0], [0, 1, 0.5, 0.5]], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(normalize_per_token(np.array([[5.0], [0.0]])), np.zeros((2, 1)))  # T' = 1
    with pytest.raises(ValueError):
        normalize_per_token(np.arange(4.0))


def test_auto_batch_size_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert auto_batch_size(cpu, 100, OcclusionOptions(batch_size=3)) == 3
    assert auto_batch_size(cpu, 100, OcclusionOptions(batch_frames=1000)) == 10
    assert auto_batch_size(cpu, 3000, OcclusionOptions(batch_frames=1000)) == 1
    assert auto_batch_size(cpu, 1, OcclusionOptions(batch_frames=10**6, max_batch_size=64)) == 64


def test_run_batches_halves_on_out_of_memory() -> None:
    seen: list[tuple[int, int]] = []

    def step(start: int, stop: int) -> None:
        if stop - start > 3:
            raise torch.OutOfMemoryError("fake")
        seen.append((start, stop))

    used = spes._run_batches(11, 10, step)
    assert used == 2  # 10 -> 5 -> 2
    assert [i for a, b in seen for i in range(a, b)] == list(range(11))

    def always(start: int, stop: int) -> None:
        raise torch.OutOfMemoryError("fake")

    with pytest.raises(torch.OutOfMemoryError):
        spes._run_batches(4, 4, always)


def test_clean_log_probs_matches_model() -> None:
    model = _model()
    x = torch.from_numpy(_features())
    dec = torch.tensor([DEC])
    lp, enc = clean_log_probs(model, x, dec)
    assert lp.dtype == torch.float32 and lp.shape == (len(DEC), 10)
    with torch.no_grad():
        ref = model.decode_teacher_forced(enc.states, enc.lengths, dec).logits[0]
    torch.testing.assert_close(lp, torch.log_softmax(ref.float(), -1), rtol=0, atol=0)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(len(DEC)), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- SM^X vs naive loop
def test_explain_input_equals_naive_loop_and_batch_size() -> None:
    model = _model(1)
    x = _features(seed=1)
    levels = _levels()
    uid, seed, n_masks = "utt_7", 3, 62  # 62 // 3 = 20 masks per level, 60 used
    ref, den = _naive_input(model, x, DEC, levels, n_masks, 0.5, seed, uid)
    res1 = explain_input(
        model, x, DEC, levels, OcclusionOptions(n_masks=n_masks, seed=seed, batch_size=1), uid
    )
    assert res1.n_masks == 60 and res1.batch_size == 1
    assert res1.saliency.dtype == np.float32 and res1.saliency.shape == (len(DEC), T, N_MELS)
    assert res1.counts.dtype == np.int64 and res1.counts.shape == (T, N_MELS)
    np.testing.assert_array_equal(res1.counts, den)
    assert ref.max() > 1e-3  # masks do change the output
    # Same model calls and the same fp32 KL; only the float64 summation order differs (per level,
    # then over levels), far below the float32 resolution of the returned map: exact here.
    np.testing.assert_array_equal(res1.saliency, ref.astype(np.float32))
    # A float64 KL instead of the fp32 one used by the reference (spec §2/§9: KL in fp32 log space)
    # differs by the fp32 rounding of the log-probabilities, ~1e-7 absolute on KL values of ~1e-2.
    ref64, _ = _naive_input(model, x, DEC, levels, n_masks, 0.5, seed, uid, fp32_kl=False)
    np.testing.assert_allclose(res1.saliency, ref64, rtol=0, atol=1e-6)
    # maps do not depend on the batch size
    res7 = explain_input(
        model, x, DEC, levels, OcclusionOptions(n_masks=n_masks, seed=seed, batch_size=7), uid
    )
    assert res7.batch_size == 7
    np.testing.assert_array_equal(res7.counts, res1.counts)
    # Exactly equal on this machine; batched float64 kernels may round the last bit differently
    # elsewhere, which the fp32 KL / float32 map can turn into at most ~1 float32 ulp.
    np.testing.assert_allclose(res7.saliency, res1.saliency, rtol=2.0**-22, atol=1e-10)
    res_auto = explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=n_masks, seed=seed), uid)
    assert res_auto.batch_size == auto_batch_size(torch.device("cpu"), T, OcclusionOptions())
    np.testing.assert_allclose(res_auto.saliency, res1.saliency, rtol=2.0**-22, atol=1e-10)
    # tensor features and copied segmentations give the same map
    res_t = explain_input(
        model,
        torch.from_numpy(x),
        DEC,
        [lab.copy() for lab in levels],
        OcclusionOptions(n_masks=n_masks, seed=seed, batch_size=1),
        uid,
    )
    np.testing.assert_array_equal(res_t.saliency, res1.saliency)


def test_explain_encoder_equals_naive_loop_and_batch_size() -> None:
    model = _model(2)
    x = _features(seed=2)
    uid, seed, n_masks, p = "utt_3", 5, 50, 0.7
    ref, den = _naive_encoder(model, x, DEC, n_masks, p, seed, uid)
    t_enc = int(model.output_lengths(torch.tensor([T]))[0])
    res1 = explain_encoder(
        model, x, DEC, OcclusionOptions(n_masks=n_masks, p=p, seed=seed, batch_size=1), uid
    )
    assert res1.saliency.shape == (len(DEC), t_enc) and res1.counts.shape == (t_enc,)
    assert res1.n_masks == n_masks and res1.batch_size == 1
    np.testing.assert_array_equal(res1.counts, den)
    assert ref.max() > 1e-3
    np.testing.assert_array_equal(res1.saliency, ref.astype(np.float32))  # see the SM^X test
    ref64, _ = _naive_encoder(model, x, DEC, n_masks, p, seed, uid, fp32_kl=False)
    np.testing.assert_allclose(res1.saliency, ref64, rtol=0, atol=1e-6)
    res7 = explain_encoder(
        model, x, DEC, OcclusionOptions(n_masks=n_masks, p=p, seed=seed, batch_size=7), uid
    )
    np.testing.assert_array_equal(res7.counts, res1.counts)
    np.testing.assert_allclose(res7.saliency, res1.saliency, rtol=2.0**-22, atol=1e-10)


def test_seeds_and_ids_determine_the_maps() -> None:
    model = _model(3)
    x = _features(seed=3)
    levels = _levels()

    def sx(seed: int, uid: str) -> np.ndarray:
        return explain_input(
            model, x, DEC, levels, OcclusionOptions(n_masks=30, seed=seed, batch_size=16), uid
        ).saliency

    def sh(seed: int, uid: str) -> np.ndarray:
        return explain_encoder(
            model, x, DEC, OcclusionOptions(n_masks=40, p=0.7, seed=seed, batch_size=16), uid
        ).saliency

    for fn in (sx, sh):
        a = fn(1, "u")
        np.testing.assert_array_equal(fn(1, "u"), a)
        assert not np.array_equal(fn(2, "u"), a)
        assert not np.array_equal(fn(1, "v"), a)


# --------------------------------------------------------------------------- p = 0 and p = 1
def test_nothing_occluded_gives_zero_maps_and_zero_kl(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(4)
    x = _features(seed=4)
    levels = _levels()
    recorded: list[torch.Tensor] = []
    real = spes.kl_rows

    def spy(clean: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        out = real(clean, log_probs)
        recorded.append(out.clone())
        return out

    monkeypatch.setattr(spes, "kl_rows", spy)
    res = explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=9, p=0.0, batch_size=4), "u")
    assert (res.counts == 0).all() and (res.saliency == 0).all()
    assert res.n_masks == 9
    # the unmasked batched passes reproduce the clean pass (float64 model)
    assert sum(r.shape[0] for r in recorded) == 9
    assert max(float(r.max()) for r in recorded) < 1e-10
    recorded.clear()
    res_h = explain_encoder(model, x, DEC, OcclusionOptions(n_masks=9, p=0.0, batch_size=4), "u")
    assert (res_h.counts == 0).all() and (res_h.saliency == 0).all()
    assert sum(r.shape[0] for r in recorded) == 9
    assert max(float(r.max()) for r in recorded) < 1e-10


def test_everything_occluded_gives_the_kl_of_the_zero_input() -> None:
    model = _model(5)
    x = _features(seed=5)
    levels = _levels()
    res = explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=6, p=1.0, batch_size=4), "u")
    np.testing.assert_array_equal(res.counts, np.full((T, N_MELS), 6))
    xt = torch.from_numpy(x)
    dec = torch.tensor([DEC])
    clean, enc = clean_log_probs(model, xt, dec)
    with torch.no_grad():
        e0 = model.encode(torch.zeros(1, T, N_MELS, dtype=torch.float64), torch.tensor([T]))
        lq = torch.log_softmax(model.decode_teacher_forced(e0.states, e0.lengths, dec).logits.float(), -1)
        expected = kl_rows(clean, lq)[0].numpy()  # (I,)
        zero_states = torch.zeros_like(enc.states)
        lqh = torch.log_softmax(model.decode_teacher_forced(zero_states, enc.lengths, dec).logits.float(), -1)
        expected_h = kl_rows(clean, lqh)[0].numpy()
    assert expected.min() > 0
    np.testing.assert_allclose(
        res.saliency, np.broadcast_to(expected[:, None, None], res.saliency.shape), rtol=1e-6
    )
    res_h = explain_encoder(model, x, DEC, OcclusionOptions(n_masks=5, p=1.0, batch_size=2), "u")
    np.testing.assert_array_equal(res_h.counts, np.full(enc.states.size(1), 5))
    np.testing.assert_allclose(
        res_h.saliency, np.broadcast_to(expected_h[:, None], res_h.saliency.shape), rtol=1e-6
    )


# --------------------------------------------------------------------------- planted relevance
REGIONS = [(0, 5, 0, 6), (6, 11, 8, 16), (12, 16, 2, 10)]  # row i: encoder steps [a, b), bins [f0, f1)
P_T, P_F, P_VOCAB = 64, 16, 8
P_DEC = [EOS, 3, 4]


class PlantedModel(nn.Module):
    """Stand-in model whose row i depends only on the mean of REGIONS[i] of the (pooled) input."""

    def __init__(self, regions=REGIONS, vocab: int = P_VOCAB, n_mels: int = P_F) -> None:
        super().__init__()
        self.dims = fake_model_dims(vocab, n_mels, 16)
        self.regions = regions
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))
        g = torch.Generator().manual_seed(0)
        self.register_buffer(
            "weights", 2.0 * torch.randn(len(regions), vocab, generator=g, dtype=torch.float64)
        )

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> SimpleNamespace:
        b, t, f = features.shape
        t_enc = math.ceil(t / 4)
        padded = nn.functional.pad(features, (0, 0, 0, 4 * t_enc - t))
        states = padded.view(b, t_enc, 4, f).mean(2) * self.scale  # D = F
        enc_lengths = (lengths.long() + 3) // 4
        mask = torch.arange(t_enc)[None, :] >= enc_lengths[:, None]
        return SimpleNamespace(states=states, lengths=enc_lengths, padding_mask=mask)

    def decode_teacher_forced(self, states, lengths_or_mask, decoder_input) -> SimpleNamespace:
        rows = decoder_input.size(1)
        means = torch.stack(
            [states[:, a:b, f0:f1].mean((1, 2)) for a, b, f0, f1 in self.regions[:rows]], dim=1
        )
        return SimpleNamespace(logits=means[..., None] * self.weights[None, :rows])


def _planted_features(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((P_T, P_F))  # noisy background
    for a, b, f0, f1 in REGIONS:
        x[4 * a : 4 * b, f0:f1] += 3.0  # high-energy blobs
    return x


def _planted_levels(x: np.ndarray) -> list[np.ndarray]:
    opts = SegmentationOptions(base_segments=(16, 24, 32), threshold_frames=None, reference_frames=P_T)
    levels, _ = segment_levels(x, opts)
    return levels


def test_planted_relevance_input_map() -> None:
    model = PlantedModel()
    x = _planted_features()
    res = explain_input(model, x, P_DEC, _planted_levels(x), OcclusionOptions(n_masks=600, seed=1), "planted")
    assert res.saliency.shape == (3, P_T, P_F)
    for i, (a, b, f0, f1) in enumerate(REGIONS):
        inside = np.zeros((P_T, P_F), dtype=bool)
        inside[4 * a : 4 * b, f0:f1] = True
        k = int(inside.sum()) // 2
        top = np.argsort(-res.saliency[i].ravel(), kind="stable")[:k]
        precision = inside.ravel()[top].mean()
        assert precision >= 0.9, (i, precision)
        assert res.saliency[i][inside].mean() > 1.2 * res.saliency[i][~inside].mean()


def test_planted_relevance_encoder_map() -> None:
    model = PlantedModel()
    x = _planted_features(1)
    res = explain_encoder(model, x, P_DEC, OcclusionOptions(n_masks=1000, p=0.7, seed=1), "planted")
    assert res.saliency.shape == (3, P_T // 4)
    for i, (a, b, _, _) in enumerate(REGIONS):
        top = np.argsort(-res.saliency[i], kind="stable")[: b - a]  # as many as the region's steps
        precision = np.mean([a <= t < b for t in top])
        assert precision >= 0.9, (i, precision, res.saliency[i])


# --------------------------------------------------------------------------- mask statistics
@pytest.mark.parametrize("p", [0.3, 0.5])
def test_input_masks_occlude_with_probability_p(p: float) -> None:
    model = PlantedModel()
    x = _planted_features()
    levels = _planted_levels(x)
    n = 3000
    res = explain_input(
        model, x, P_DEC, levels, OcclusionOptions(n_masks=n, p=p, seed=2, batch_size=500), "stats"
    )
    assert res.n_masks == n
    freq = res.counts / n
    se = math.sqrt(p * (1 - p) / n)
    assert np.abs(freq - p).max() < 5 * se, (freq.min(), freq.max())
    # and on average over the cells (correlated within a segment, hence the loose bound)
    assert abs(freq.mean() - p) < 3 * se


def test_encoder_masks_occlude_with_probability_p_h() -> None:
    model = PlantedModel()
    x = _planted_features()
    n, p = 4000, 0.7
    res = explain_encoder(model, x, P_DEC, OcclusionOptions(n_masks=n, p=p, seed=2, batch_size=1000), "stats")
    freq = res.counts / n
    se = math.sqrt(p * (1 - p) / n)
    assert freq.shape == (P_T // 4,)
    assert np.abs(freq - p).max() < 5 * se, freq
    assert abs(freq.mean() - p) < 4 * se / math.sqrt(len(freq))  # steps are drawn independently


# --------------------------------------------------------------------------- errors
def test_input_errors() -> None:
    model = _model()
    x = _features()
    levels = _levels()
    opts = OcclusionOptions(n_masks=3, batch_size=3)
    with pytest.raises(ValueError, match="segmentation"):
        explain_input(model, x, DEC, [levels[0][:-1]], opts)
    with pytest.raises(ValueError, match="segmentation"):
        explain_input(model, x, DEC, [levels[0][:, :-1], levels[1]], opts)
    negative = levels[0].copy()
    negative[0, 0] = -1
    with pytest.raises(ValueError):
        explain_input(model, x, DEC, [negative], opts)
    with pytest.raises(ValueError, match="EOS"):
        explain_input(model, x, DEC[1:], levels, opts)
    with pytest.raises(ValueError, match="EOS"):
        explain_input(model, x, [], levels, opts)
    with pytest.raises(ValueError):
        explain_input(model, x, [EOS, 1, 4], levels, opts)  # PAD
    with pytest.raises(ValueError):
        explain_input(model, x, [EOS, 10], levels, opts)  # out of vocabulary
    with pytest.raises(ValueError):
        explain_input(model, x, [EOS] + [4] * 40, levels, opts)  # > max_target_positions
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        explain_input(model, bad, DEC, levels, opts)
    with pytest.raises(ValueError):
        explain_input(model, x[:, :-1], DEC, [lab[:, :-1] for lab in levels], opts)  # wrong n_mels
    with pytest.raises(ValueError):
        explain_input(model, x[0], DEC, levels, opts)  # 1-D
    with pytest.raises(ValueError):
        explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=2))  # fewer masks than levels
    with pytest.raises(ValueError):
        explain_input(model, x, DEC, [], opts)  # no level


def test_encoder_errors() -> None:
    model = _model()
    x = _features()
    opts = OcclusionOptions(n_masks=3, batch_size=3)
    with pytest.raises(ValueError, match="EOS"):
        explain_encoder(model, x, [4, 5], opts)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError):
        explain_encoder(model, bad, DEC, opts)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        explain_encoder(model, bad, DEC, opts)
    with pytest.raises(ValueError):
        explain_encoder(model, x[:, :5], DEC, opts)


def test_model_mode_is_restored() -> None:
    model = _model()
    model.train()
    explain_encoder(model, _features(), DEC, OcclusionOptions(n_masks=2, batch_size=2))
    assert model.training
    model.eval()
    explain_input(model, _features(), DEC, _levels(), OcclusionOptions(n_masks=3, batch_size=3))
    assert not model.training


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_engine_batch_invariant_and_bf16_close() -> None:
    """On CUDA: the automatic (memory-sized) batch gives the maps of one mask per pass, and bf16
    autocast gives maps that correlate strongly with fp32 ones (same masks)."""
    torch.manual_seed(0)
    model = tiny_model(0, vocab=40, n_mels=80, d_model=64, ffn=128, conv_channels=64).float().cuda()
    x = torch.randn(120, 80).numpy()
    levels, _ = segment_levels(x, SegmentationOptions(base_segments=(200, 300)))
    dec = [2, 4, 7, 9, 11]
    auto = explain_input(model, x, dec, levels, OcclusionOptions(n_masks=200, seed=3), "u")
    one = explain_input(model, x, dec, levels, OcclusionOptions(n_masks=200, seed=3, batch_size=1), "u")
    np.testing.assert_array_equal(auto.counts, one.counts)
    np.testing.assert_allclose(auto.saliency, one.saliency, rtol=1e-3, atol=1e-6)
    bf16 = explain_input(
        model, x, dec, levels, OcclusionOptions(n_masks=200, seed=3, autocast_bf16=True), "u"
    )
    r = np.corrcoef(bf16.saliency.reshape(-1), auto.saliency.reshape(-1))[0, 1]
    assert r > 0.95
    h32 = explain_encoder(model, x, dec, OcclusionOptions(n_masks=300, p=0.7, seed=3), "u")
    h16 = explain_encoder(
        model, x, dec, OcclusionOptions(n_masks=300, p=0.7, seed=3, autocast_bf16=True), "u"
    )
    assert np.corrcoef(h32.saliency.reshape(-1), h16.saliency.reshape(-1))[0, 1] > 0.95


class _Reprojecting:
    """The model without ``encoder_occlusion``: SM^H re-projects the masked encoder per mask."""

    def __init__(self, model: S2TModel) -> None:
        self._model = model

    def __getattr__(self, name: str):
        if name == "encoder_occlusion":
            raise AttributeError(name)
        return getattr(self._model, name)


def test_encoder_map_with_cached_cross_kv_equals_reprojection() -> None:
    """Cross K/V projected once, zeroed steps replaced by the projection bias: the same SM^H as
    zeroing the encoder rows and projecting every masked copy (to 1e-6), with non-zero biases."""
    model = _model(3)
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.cross_attn.k_proj.bias.normal_(0, 0.5)
            layer.cross_attn.v_proj.bias.normal_(0, 0.5)
    x = _features(seed=3)
    opts = OcclusionOptions(n_masks=50, p=0.7, seed=2, batch_size=8)
    fast = explain_encoder(model, x, DEC, opts, "u")
    slow = explain_encoder(_Reprojecting(model), x, DEC, opts, "u")
    assert slow.saliency.max() > 1e-3
    np.testing.assert_array_equal(fast.counts, slow.counts)
    np.testing.assert_allclose(fast.saliency, slow.saliency, rtol=0, atol=1e-6)
    # the logits themselves, for one batch of masks
    with torch.no_grad():
        dtype = next(model.parameters()).dtype
        enc = model.encode(torch.as_tensor(x, dtype=dtype)[None], torch.tensor([T]))
        keep = torch.rand(6, enc.states.size(1), generator=torch.Generator().manual_seed(0)) >= 0.5
        dec = torch.tensor([DEC] * 6)
        want = model.decode_teacher_forced(enc.states * keep[..., None], enc.lengths.expand(6), dec).logits
        got = model.encoder_occlusion(enc.states)(keep, dec)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5)
    assert not torch.allclose(
        want, model.decode_teacher_forced(enc.states.expand(6, -1, -1), enc.lengths.expand(6), dec).logits
    )


def test_cpu_bf16_autocast_runs_in_bf16_and_agrees_with_fp32() -> None:
    """explain.bf16 on CPU: the model runs under bf16 autocast (its maps differ from fp32 ones),
    the masks and counts are the same, and the maps agree closely (same masks, fp32 KL).  Autocast
    only casts fp32, so the (float64) test model runs as a float32 copy."""
    model, x, levels = _model().float(), _features().astype(np.float32), _levels()
    fp32 = explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=60, seed=3), "u")
    bf16 = explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=60, seed=3, autocast_bf16=True), "u")
    np.testing.assert_array_equal(fp32.counts, bf16.counts)
    assert not np.array_equal(fp32.saliency, bf16.saliency)  # autocast did run in bf16
    assert bf16.saliency.min() >= 0
    assert np.corrcoef(fp32.saliency.ravel(), bf16.saliency.ravel())[0, 1] > 0.99
    h32 = explain_encoder(model, x, DEC, OcclusionOptions(n_masks=80, p=0.7, seed=3), "u")
    h16 = explain_encoder(model, x, DEC, OcclusionOptions(n_masks=80, p=0.7, seed=3, autocast_bf16=True), "u")
    np.testing.assert_array_equal(h32.counts, h16.counts)
    assert not np.array_equal(h32.saliency, h16.saliency)
    assert np.corrcoef(h32.saliency.ravel(), h16.saliency.ravel())[0, 1] > 0.99


def test_engine_phases_are_labelled_for_the_profiler() -> None:
    """Every phase label of spes.PHASES appears in a profile of SM^X; SM^H has all but the encoder."""
    from torch.profiler import ProfilerActivity, profile

    model, x, levels = _model(), _features(), _levels()
    with profile(activities=[ProfilerActivity.CPU], acc_events=True) as prof:
        explain_input(model, x, DEC, levels, OcclusionOptions(n_masks=6, batch_size=2), "u")
    assert set(spes.PHASES.values()) <= {e.key for e in prof.key_averages()}
    with profile(activities=[ProfilerActivity.CPU], acc_events=True) as prof:
        explain_encoder(model, x, DEC, OcclusionOptions(n_masks=4, batch_size=2, p=0.7), "u")
    names = {e.key for e in prof.key_averages()}
    assert set(spes.PHASES.values()) - {spes.PHASES["encoder"]} <= names
    assert spes.PHASES["encoder"] not in names


def test_bf16_setting_auto_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """'auto' is the device's native bf16; true/false are kept; anything else is an error."""
    import caspes.model.inference as inference

    cpu = torch.device("cpu")
    assert inference.resolve_bf16(True, cpu) is True and inference.resolve_bf16(False, cpu) is False
    for native in (True, False):
        monkeypatch.setattr(inference, "native_bf16", lambda device, native=native: native)
        assert inference.resolve_bf16("auto", cpu) is native
    with pytest.raises(ValueError, match="'auto'"):
        inference.resolve_bf16("fast", cpu)
    with pytest.raises(ValueError, match="autocast_bf16"):
        OcclusionOptions(autocast_bf16="yes")
    assert OcclusionOptions(autocast_bf16="auto").autocast_bf16 == "auto"


def _compiled_maps(backend: str, device: str) -> tuple:
    model = tiny_model(0, vocab=40, n_mels=80, d_model=64, ffn=128, conv_channels=64).float().to(device)
    x = torch.randn(120, 80, generator=torch.Generator().manual_seed(0)).numpy()
    levels, _ = segment_levels(x, SegmentationOptions(base_segments=(200, 300)))
    dec = [2, 4, 7, 9, 11]
    # batch 7 does not divide 60 masks per level: the last batch of each level has another size
    opts = OcclusionOptions(n_masks=180, seed=3, batch_size=7)
    h_opts = OcclusionOptions(n_masks=90, p=0.7, seed=3, batch_size=7)
    eager = explain_input(model, x, dec, levels, opts, "u"), explain_encoder(model, x, dec, h_opts, "u")
    assert compile_stacks(model, backend=backend) == ["encoder", "decoder"]
    compiled = explain_input(model, x, dec, levels, opts, "u"), explain_encoder(model, x, dec, h_opts, "u")
    return eager, compiled


def test_compiled_stacks_give_the_eager_maps() -> None:
    """torch.compile'd encoder/decoder (traced by dynamo, run by the eager backend; dynamic shapes,
    so batches of two sizes and the clean pass share a graph) give the eager maps, element for
    element, and the model keeps its state dict."""
    eager, compiled = _compiled_maps("eager", "cpu")
    for e, c in zip(eager, compiled, strict=True):
        np.testing.assert_array_equal(c.counts, e.counts)
        np.testing.assert_allclose(c.saliency, e.saliency, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="no encoder or decoder"):
        compile_stacks(torch.nn.Linear(2, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inductor_compiled_maps_agree() -> None:
    """On CUDA with inductor (fused kernels): the maps agree with eager ones to float rounding."""
    eager, compiled = _compiled_maps("inductor", "cuda")
    for e, c in zip(eager, compiled, strict=True):
        np.testing.assert_array_equal(c.counts, e.counts)
        assert np.corrcoef(c.saliency.reshape(-1), e.saliency.reshape(-1))[0, 1] > 0.999
