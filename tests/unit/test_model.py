"""Unit tests for the speech-to-text model (caspes.model)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from caspes.model import (
    PAPER_DIMENSIONS,
    PAPER_PARAMETERS,
    DecoderCache,
    ModelDimensions,
    MultiHeadAttention,
    S2TModel,
    count_parameters,
    subsampled_lengths,
)
from caspes.model import attention as attention_module
from caspes.model.attention import attention_product, fp32_attention
from caspes.model.conformer import (
    RelPositionMultiHeadAttention,
    depthwise_conv1d,
    relative_positional_encoding,
    relative_shift,
)

N_MELS = 8
VOCAB = 20


def _tiny_dims(**overrides: object) -> ModelDimensions:
    base = dict(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_heads=2,
        decoder_heads=2,
        encoder_ffn=64,
        decoder_ffn=64,
        vocab_size=VOCAB,
        n_mels=N_MELS,
        conv_channels=32,
        conv_kernel=7,
        ctc_src_layer=1,
        ctc_tgt=True,
        dropout=0.1,
    )
    base.update(overrides)
    return ModelDimensions(**base)  # type: ignore[arg-type]


def _randomise_batchnorm(model: S2TModel) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)


def _padded_batch(
    lengths: list[int], num_tokens: list[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features padded with garbage and decoder inputs right-padded with pad_id."""
    b, t, i = len(lengths), max(lengths), max(num_tokens)
    features = torch.randn(b, t, N_MELS) * 5.0  # garbage in padded frames too
    tokens = torch.full((b, i), 1, dtype=torch.long)
    for row, n in enumerate(num_tokens):
        tokens[row, 0] = 2
        tokens[row, 1:n] = torch.randint(3, VOCAB, (n - 1,))
    return features, torch.tensor(lengths), tokens


# ---------------------------------------------------------------------------- dimensions
def test_dimensions_roundtrip_and_validation() -> None:
    torch.manual_seed(0)
    dims = _tiny_dims()
    assert ModelDimensions.from_dict(dims.asdict()) == dims
    with pytest.raises(ValueError):
        ModelDimensions.from_dict({**dims.asdict(), "bogus": 1})
    with pytest.raises(ValueError):
        _tiny_dims(encoder_heads=3)
    with pytest.raises(ValueError):
        _tiny_dims(ctc_src_layer=5)
    with pytest.raises(ValueError):
        _tiny_dims(conv_kernel=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        dims.d_model = 64  # type: ignore[misc]
    assert PAPER_DIMENSIONS["base"].ctc_src_layer == 8
    assert PAPER_DIMENSIONS["large"].ctc_src_layer == 16


# ---------------------------------------------------------------------------- lengths
def test_subsampled_lengths_match_encoder_output() -> None:
    torch.manual_seed(0)
    model = S2TModel(_tiny_dims()).eval()
    for t in list(range(1, 21)) + [37, 64, 101, 1000]:
        expected = math.ceil(t / 4)
        assert int(subsampled_lengths(torch.tensor([t]))[0]) == expected
        assert int(model.output_lengths(torch.tensor([t]))[0]) == expected
        if t <= 101:
            with torch.no_grad():
                enc = model.encode(torch.randn(1, t, N_MELS), torch.tensor([t]))
            assert enc.states.shape == (1, expected, 32)
            assert int(enc.lengths[0]) == expected
    # batched: lengths per item, padded width from the longest item
    with torch.no_grad():
        enc = model.encode(torch.randn(3, 19, N_MELS), torch.tensor([19, 6, 1]))
    assert enc.lengths.tolist() == [5, 2, 1]
    assert enc.padding_mask.tolist() == [[False] * 5, [False] * 2 + [True] * 3, [False] + [True] * 4]
    assert enc.intermediate is not None and enc.intermediate.shape == enc.states.shape


def test_invalid_inputs_raise() -> None:
    torch.manual_seed(0)
    model = S2TModel(_tiny_dims()).eval()
    with pytest.raises(ValueError):
        model.encode(torch.randn(2, 10, N_MELS + 1), torch.tensor([10, 5]))
    with pytest.raises(ValueError):
        model.encode(torch.randn(2, 10, N_MELS), torch.tensor([11, 5]))
    with pytest.raises(ValueError):
        model.encode(torch.randn(2, 10, N_MELS), torch.tensor([0, 5]))
    enc = model.encode(torch.randn(2, 10, N_MELS), torch.tensor([10, 5]))
    with pytest.raises(ValueError):
        model.decode_teacher_forced(enc.states, enc.lengths, torch.zeros(2, 3))  # float tokens
    with pytest.raises(ValueError):
        model.decode_teacher_forced(enc.states, enc.lengths[:1], torch.zeros(2, 3, dtype=torch.long))


# ---------------------------------------------------------------------------- padding
@pytest.mark.parametrize("random_batchnorm", [False, True])
def test_padding_invariance(random_batchnorm: bool) -> None:
    torch.manual_seed(1)
    model = S2TModel(_tiny_dims())
    if random_batchnorm:
        _randomise_batchnorm(model)
    model.eval()
    lengths, num_tokens = [29, 13, 6], [5, 3, 2]
    features, lens, tokens = _padded_batch(lengths, num_tokens)
    with torch.no_grad():
        enc = model.encode(features, lens)
        dec = model.decode_teacher_forced(enc.states, enc.lengths, tokens, return_attention=True)
        for row, (t, n) in enumerate(zip(lengths, num_tokens, strict=True)):
            single = model.encode(features[row : row + 1, :t], lens[row : row + 1])
            t_enc = int(single.lengths[0])
            assert t_enc == int(enc.lengths[row])
            torch.testing.assert_close(enc.states[row, :t_enc], single.states[0], atol=1e-5, rtol=0)
            assert enc.intermediate is not None and single.intermediate is not None
            torch.testing.assert_close(
                enc.intermediate[row, :t_enc], single.intermediate[0], atol=1e-5, rtol=0
            )
            assert torch.all(enc.states[row, t_enc:] == 0)
            single_dec = model.decode_teacher_forced(
                single.states, single.lengths, tokens[row : row + 1, :n], return_attention=True
            )
            torch.testing.assert_close(dec.logits[row, :n], single_dec.logits[0], atol=1e-5, rtol=0)
            assert dec.cross_attention is not None and single_dec.cross_attention is not None
            torch.testing.assert_close(
                dec.cross_attention[row, :, :, :n, :t_enc], single_dec.cross_attention[0], atol=1e-5, rtol=0
            )
            for head in ("src", "tgt"):
                full = model.ctc_log_probs(enc, head)[row, :t_enc]
                alone = model.ctc_log_probs(single, head)[0]
                torch.testing.assert_close(full, alone, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- attention
def test_explicit_attention_matches_sdpa() -> None:
    torch.manual_seed(2)
    attn = MultiHeadAttention(32, 4, dropout=0.0).eval()
    query = torch.randn(3, 5, 32)
    source = torch.randn(3, 9, 32)
    pad = torch.zeros(3, 9, dtype=torch.bool)
    pad[1, 6:] = True
    pad[2, 2:] = True
    out_fast, w_none = attn(query, source, key_padding_mask=pad)
    out_slow, weights = attn(query, source, key_padding_mask=pad, need_weights=True)
    assert w_none is None and weights is not None
    assert weights.shape == (3, 4, 5, 9)
    torch.testing.assert_close(out_fast, out_slow, atol=1e-5, rtol=0)
    assert torch.all(weights[1, :, :, 6:] == 0) and torch.all(weights[2, :, :, 2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 5), atol=1e-6, rtol=0)
    # causal self-attention, square and bottom-right aligned (incremental) variants
    x = torch.randn(2, 6, 32)
    fast, _ = attn(x, x, causal=True)
    slow, w = attn(x, x, causal=True, need_weights=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    assert w is not None and torch.all(w.triu(diagonal=1) == 0)
    k, v = attn.project_kv(x)
    last, _ = attn.attend(x[:, -2:], k, v, causal=True)
    torch.testing.assert_close(last, fast[:, -2:], atol=1e-5, rtol=0)


def test_cross_attention_shape_and_normalisation() -> None:
    torch.manual_seed(3)
    dims = _tiny_dims()
    model = S2TModel(dims).eval()
    features, lens, tokens = _padded_batch([31, 17, 9], [6, 4, 3])
    with torch.no_grad():
        enc = model.encode(features, lens)
        plain = model.decode_teacher_forced(enc.states, enc.lengths, tokens)
        out = model.decode_teacher_forced(enc.states, enc.padding_mask, tokens, return_attention=True)
    assert plain.cross_attention is None
    torch.testing.assert_close(plain.logits, out.logits, atol=1e-5, rtol=0)
    attn = out.cross_attention
    t_enc = enc.states.size(1)
    assert attn is not None and attn.shape == (
        3,
        dims.decoder_layers,
        dims.decoder_heads,
        tokens.size(1),
        t_enc,
    )
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-6, rtol=0)
    for row, t in enumerate(enc.lengths.tolist()):
        assert torch.all(attn[row, ..., t:] == 0)
        assert torch.all(attn[row, ..., :t] > 0)


# ---------------------------------------------------------------------------- incremental
def test_decode_step_matches_teacher_forcing() -> None:
    torch.manual_seed(4)
    model = S2TModel(_tiny_dims())
    _randomise_batchnorm(model)
    model.eval()
    features, lens, _ = _padded_batch([33, 21], [1, 1])
    tokens = torch.randint(3, VOCAB, (2, 7))
    tokens[:, 0] = 2
    with torch.no_grad():
        enc = model.encode(features, lens)
        full = model.decode_teacher_forced(enc.states, enc.lengths, tokens, return_attention=True)
        assert full.cross_attention is not None
        cache: DecoderCache | None = None
        for i in range(1, tokens.size(1) + 1):
            logits, cache, last_attn = model.decode_step(
                enc.states, enc.padding_mask, tokens[:, :i], cache, return_attention=True
            )
            assert cache.length == i
            torch.testing.assert_close(logits, full.logits[:, i - 1], atol=1e-5, rtol=0)
            assert last_attn is not None
            torch.testing.assert_close(last_attn, full.cross_attention[:, :, :, i - 1], atol=1e-5, rtol=0)
            no_cache, _, _ = model.decode_step(enc.states, enc.lengths, tokens[:, :i])
            torch.testing.assert_close(no_cache, full.logits[:, i - 1], atol=1e-5, rtol=0)
        # beam-style reordering of the cache
        order = torch.tensor([1, 1, 0])
        assert cache is not None
        cache = cache.reorder(order)
        ext = torch.cat([tokens[order], torch.full((3, 1), 5)], dim=1)
        step_logits, _, _ = model.decode_step(enc.states[order], enc.padding_mask[order], ext, cache)
        ref = model.decode_teacher_forced(enc.states[order], enc.lengths[order], ext).logits[:, -1]
        torch.testing.assert_close(step_logits, ref, atol=1e-5, rtol=0)
        with pytest.raises(ValueError):
            model.decode_step(enc.states[order], enc.padding_mask[order], ext[:, :3], cache)


# ---------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("name", ["base", "small", "large"])
def test_paper_parameter_counts(name: str) -> None:
    torch.manual_seed(5)
    dims = PAPER_DIMENSIONS[name]
    count = count_parameters(dims)
    target = PAPER_PARAMETERS[name]
    print(
        f"\n{name}: {count:,} parameters ({count / 1e6:.1f}M; paper {target / 1e6:.0f}M; ratio {count / target:.3f})"
    )
    assert abs(count - target) <= 0.10 * target


def test_tied_embeddings_share_weights() -> None:
    torch.manual_seed(6)
    tied = S2TModel(_tiny_dims(tie_embeddings=True))
    untied = S2TModel(_tiny_dims(tie_embeddings=False))
    assert tied.decoder.output_projection.weight is tied.decoder.embed_tokens.weight
    assert untied.num_parameters() - tied.num_parameters() == VOCAB * 32
    no_ctc = S2TModel(_tiny_dims(ctc_src_layer=0, ctc_tgt=False))
    assert untied.num_parameters() - no_ctc.num_parameters() == 2 * (VOCAB * 32 + VOCAB)
    with pytest.raises(ValueError):
        no_ctc.ctc_log_probs(no_ctc.encode(torch.randn(1, 8, N_MELS), torch.tensor([8])), "src")


# ---------------------------------------------------------------------------- training
def test_overfit_smoke() -> None:
    torch.manual_seed(7)
    model = S2TModel(_tiny_dims(dropout=0.0))
    model.train()
    features, lens, tokens = _padded_batch([40, 28], [8, 6])
    decoder_input = tokens
    target = torch.roll(tokens, shifts=-1, dims=1)
    target[:, -1] = 1
    for row, n in enumerate([8, 6]):
        target[row, n - 1] = 2  # EOS closes the target
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_fn() -> torch.Tensor:
        out = model(features, lens, decoder_input)
        ce = F.cross_entropy(out.logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=1)
        assert out.ctc_tgt_log_probs is not None and out.ctc_src_log_probs is not None
        assert out.ctc_tgt_log_probs.shape == (2, 10, VOCAB)
        return ce

    first = loss_fn().item()
    for _ in range(30):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
    last = loss_fn().item()
    print(f"\noverfit: cross-entropy {first:.3f} -> {last:.3f}")
    assert last < 0.5 * first


@pytest.mark.parametrize("t", [1, 2, 5, 63])
def test_relative_shift_is_the_distance_gather(t: int) -> None:
    """relative_shift(s)[..., i, j] == s[..., i, (T-1) - i + j], exactly, also for a
    non-contiguous input (an einsum's output)."""
    scores = torch.randn(3, 2, t, 2 * t - 1).transpose(0, 1)  # not contiguous
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    expected = scores[..., i, (t - 1) - i + j]
    got = relative_shift(scores)
    assert got.shape == (2, 3, t, t)
    assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="2T-1"):
        relative_shift(torch.randn(2, t, 2 * t))


def test_relative_attention_matches_brute_force() -> None:
    torch.manual_seed(8)
    d, h, t = 16, 2, 7
    attn = RelPositionMultiHeadAttention(d, h, dropout=0.0).eval()
    x = torch.randn(2, t, d)
    pad = torch.zeros(2, t, dtype=torch.bool)
    pad[1, 4:] = True
    pos = relative_positional_encoding(t, d)
    out = attn(x, pos, pad)
    # brute force: explicit score for every (i, j) with distance i - j
    dh = d // h
    q = attn.q_proj(x).view(2, t, h, dh)
    k = attn.k_proj(x).view(2, t, h, dh)
    v = attn.v_proj(x).view(2, t, h, dh)
    p = attn.pos_proj(pos).view(2 * t - 1, h, dh)
    scores = torch.empty(2, h, t, t)
    for i in range(t):
        for j in range(t):
            p_ij = p[(t - 1) - (i - j)]  # row of distance i - j
            content = ((q[:, i] + attn.pos_bias_u) * k[:, j]).sum(-1)
            position = ((q[:, i] + attn.pos_bias_v) * p_ij).sum(-1)
            scores[:, :, i, j] = (content + position) / math.sqrt(dh)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    ref = torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v).reshape(2, t, d)
    torch.testing.assert_close(out, attn.out_proj(ref), atol=1e-5, rtol=0)
    # the sinusoid of distance r sits in row (T-1) - r, independent of T
    torch.testing.assert_close(relative_positional_encoding(3, d), pos[t - 3 : t + 2])


@pytest.mark.parametrize(("shape", "kernel", "block"), [((3, 8, 1), 31, 16), ((2, 6, 5), 3, 16), ((4, 16, 30), 31, 16),
                                                         ((2, 16, 63), 31, 7), ((1, 16, 250), 5, 16)])  # fmt: skip
def test_depthwise_conv1d_matches_conv1d(shape: tuple[int, int, int], kernel: int, block: int) -> None:
    """The banded-matmul depthwise convolution is F.conv1d(groups=C, 'same' padding): values and the
    gradients to input, weight and bias, in float64 (no rounding to hide behind), for T shorter
    than, equal to and longer than a block, and lengths that are not a multiple of the block."""
    gen = torch.Generator().manual_seed(sum(shape) + kernel)
    x = torch.randn(*shape, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(shape[1], 1, kernel, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(shape[1], dtype=torch.float64, generator=gen, requires_grad=True)
    got = depthwise_conv1d(x, w, b, block=block)
    ref = F.conv1d(x, w, b, padding=kernel // 2, groups=shape[1])
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    grad = torch.randn(ref.shape, dtype=torch.float64, generator=gen)
    for g_got, g_ref in zip(
        torch.autograd.grad(got, (x, w, b), grad), torch.autograd.grad(ref, (x, w, b), grad), strict=True
    ):
        torch.testing.assert_close(g_got, g_ref, rtol=0, atol=1e-12)
    no_bias = F.conv1d(x, w, None, padding=kernel // 2, groups=shape[1])
    torch.testing.assert_close(depthwise_conv1d(x, w, None, block=block), no_bias, rtol=0, atol=1e-12)


def test_depthwise_conv1d_bf16_autocast_and_errors() -> None:
    """Under CPU bf16 autocast it returns bf16 as F.conv1d does, within bf16 rounding of it; bad
    shapes and even kernels raise."""
    gen = torch.Generator().manual_seed(3)
    x, w, b = (
        torch.randn(2, 16, 40, generator=gen),
        torch.randn(16, 1, 31, generator=gen),
        torch.randn(16, generator=gen),
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = depthwise_conv1d(x, w, b), F.conv1d(x, w, b, padding=15, groups=16)
    assert got.dtype == ref.dtype == torch.bfloat16
    scale = float(ref.float().abs().max())
    assert float((got.float() - ref.float()).abs().max()) <= 2**-6 * scale
    with pytest.raises(ValueError, match="odd kernel"):
        depthwise_conv1d(x, torch.randn(16, 1, 4), None)
    with pytest.raises(ValueError, match=r"\(C, 1, K\)"):
        depthwise_conv1d(x, torch.randn(8, 1, 3), None)


def test_depthwise_block_switches_the_kernel_and_restores_it() -> None:
    """``depthwise_block(0)`` makes the Conformer's convolution module call F.conv1d (the benchmarks'
    baseline); the banded default comes back afterwards, also after an exception."""
    import caspes.model.conformer as conformer

    default = conformer.DEPTHWISE_BLOCK
    assert default > 0
    calls: list[int] = []
    real = F.conv1d

    def counting(*args, **kwargs):
        calls.append(kwargs.get("groups", 1))
        return real(*args, **kwargs)

    module = conformer.ConvolutionModule(8, 5, 0.0).eval()
    x = torch.randn(2, 9, 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conformer.F, "conv1d", counting)
        banded = module(x)
        assert 8 not in calls  # the depthwise step did not go through F.conv1d
        with conformer.depthwise_block(0):
            assert conformer.DEPTHWISE_BLOCK == 0
            baseline = module(x)
        assert 8 in calls
    torch.testing.assert_close(banded, baseline, rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError), conformer.depthwise_block(3):
        raise RuntimeError
    assert conformer.DEPTHWISE_BLOCK == default
    with pytest.raises(ValueError, match=">= 0"), conformer.depthwise_block(-1):
        pass


def test_fp32_attention_under_bf16_autocast() -> None:
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    mask = torch.randn(2, 3, 7, 7)
    # no autocast: the block changes nothing, bit for bit
    plain = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    with fp32_attention():
        assert torch.equal(attention_product(q, k, v, attn_mask=mask), plain)
    qb, kb, vb, mb = (x.to(torch.bfloat16) for x in (q, k, v, mask))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert attention_product(qb, kb, vb, attn_mask=mb).dtype == torch.bfloat16
        with fp32_attention():
            out = attention_product(qb, kb, vb, attn_mask=mb, is_causal=False)
            causal = attention_product(qb, kb, vb, is_causal=True)
    assert out.dtype == torch.float32
    expected = F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float(), attn_mask=mb.float())
    assert torch.equal(out, expected)
    assert torch.equal(
        causal, F.scaled_dot_product_attention(qb.float(), kb.float(), vb.float(), is_causal=True)
    )
    # the switch nests and restores itself, also after an error
    with fp32_attention():
        with fp32_attention(False):
            assert attention_module._FP32_ATTENTION is False
        assert attention_module._FP32_ATTENTION is True
    with pytest.raises(RuntimeError), fp32_attention():
        raise RuntimeError("boom")
    assert attention_module._FP32_ATTENTION is False


def test_fp32_attention_reaches_every_attention_of_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encoder (relative-position) and decoder attention all go through attention_product."""
    seen: list[torch.dtype] = []
    original = F.scaled_dot_product_attention

    def spy(q: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        seen.append(q.dtype)
        return original(q, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    torch.manual_seed(6)
    dims = _tiny_dims(dropout=0.0)
    model = S2TModel(dims).train()
    features, lengths, tokens = _padded_batch([40, 33], [5, 4])
    with torch.autocast("cpu", dtype=torch.bfloat16), fp32_attention():
        output = model(features, lengths, tokens)
    n_calls = dims.encoder_layers + 2 * dims.decoder_layers
    assert seen == [torch.float32] * n_calls
    output.logits.float().sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(".q_proj." in n and n.startswith("encoder") for n in grads)  # through the encoder's attention
    seen.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(features, lengths, tokens)
    # without the block the decoder's queries reach the kernel in bf16 (the encoder's carry the fp32
    # position biases, and autocast casts them inside the kernel's dispatch)
    assert len(seen) == n_calls and seen[dims.encoder_layers :] == [torch.bfloat16] * (
        2 * dims.decoder_layers
    )
