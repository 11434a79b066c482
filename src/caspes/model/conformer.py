"""Conformer encoder (fairseq / FBK-fairseq ``conformer`` layout, padding-safe).

Pipeline for features ``(B, T, n_mels)`` with valid lengths ``(B,)``:

1. :class:`Conv1dSubsampler`: two Conv1d (kernel 5, stride 2, padding 2) each followed
   by a GLU over channels; ``T' = ceil(T / 4)`` (see :func:`subsampled_lengths`).
   Padded frames are zeroed before every convolution so that padding never leaks into
   valid frames.
2. Scaling by ``sqrt(D)`` (fairseq ``embed_scale``) and dropout.
3. ``N`` :class:`ConformerLayer` (pre-norm, macaron):
   ``x + 1/2 FFN(x)``; ``x + MHSA_relpos(x)``; ``x + Conv(x)``; ``x + 1/2 FFN(x)``; LayerNorm.
   The self-attention uses Transformer-XL relative positions (sinusoidal relative
   position embeddings, learned ``u``/``v`` biases, position projection without bias).
   The relative shift is done by explicit indexing (no pad-and-reshape trick), so it is
   exact for every padded length.

All modules are exactly padding invariant in eval mode: the encoder states on the valid
frames of an item do not depend on how much padding the batch adds.  Padded output
frames are set to ``0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from caspes.model.attention import attention_product

__all__ = [
    "Conv1dSubsampler",
    "relative_shift",
    "ConformerEncoder",
    "ConformerLayer",
    "ConvolutionModule",
    "EncoderOutput",
    "depthwise_block",
    "depthwise_conv1d",
    "FeedForwardModule",
    "RelPositionMultiHeadAttention",
    "lengths_to_padding_mask",
    "relative_positional_encoding",
    "subsampled_lengths",
]

_SUBSAMPLER_KERNEL = 5
_SUBSAMPLER_STRIDE = 2


# ---------------------------------------------------------------------------- helpers
def subsampled_lengths(lengths: Tensor, num_layers: int = 2) -> Tensor:
    """Exact output lengths of the subsampler: ``floor((T - 1) / 2) + 1`` per layer.

    Args:
        lengths: (B,) integer input lengths.
        num_layers: number of stride-2 convolutions.

    Returns:
        (B,) long tensor, ``ceil(T / 2**num_layers)`` for two layers of stride 2.
    """
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")
    out = lengths.long()
    pad = _SUBSAMPLER_KERNEL // 2
    for _ in range(num_layers):
        out = torch.div(out + 2 * pad - _SUBSAMPLER_KERNEL, _SUBSAMPLER_STRIDE, rounding_mode="floor") + 1
    return out


def lengths_to_padding_mask(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Bool padding mask from lengths.

    Args:
        lengths: (B,) integer lengths.
        max_length: ``T``; defaults to ``lengths.max()``.

    Returns:
        bool (B, T); ``True`` marks padded positions.
    """
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if max_length is None:
        max_length = int(lengths.max().item()) if lengths.numel() else 0
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def relative_positional_encoding(
    length: int, d_model: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Sinusoidal embeddings of the relative distances ``T-1, T-2, ..., -(T-1)``.

    Row ``k`` encodes the distance ``r = (T - 1) - k`` (query index minus key index);
    even channels hold ``sin(r * w)``, odd channels ``cos(r * w)`` (ESPnet layout).

    Returns:
        (2T - 1, D)
    """
    if length < 1 or d_model < 2 or d_model % 2 != 0:
        raise ValueError(f"need length >= 1 and an even d_model >= 2, got {length}, {d_model}")
    distances = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    freqs = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d_model)
    )
    angles = distances.unsqueeze(1) * freqs.unsqueeze(0)
    pe = torch.empty(2 * length - 1, d_model, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.to(dtype)


def _check_features(features: Tensor, lengths: Tensor, channels: int) -> None:
    if features.dim() != 3 or features.size(-1) != channels:
        raise ValueError(f"features must be (B, T, {channels}), got {tuple(features.shape)}")
    if not features.dtype.is_floating_point:
        raise ValueError(f"features must be floating point, got {features.dtype}")
    if lengths.dim() != 1 or lengths.size(0) != features.size(0):
        raise ValueError(f"lengths must be (B,) with B={features.size(0)}, got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor, got {lengths.dtype}")
    if lengths.device.type != "meta" and lengths.numel() > 0:
        lo, hi = int(lengths.min().item()), int(lengths.max().item())
        if lo < 1 or hi > features.size(1):
            raise ValueError(f"lengths must lie in [1, T={features.size(1)}], got range [{lo}, {hi}]")


# ---------------------------------------------------------------------------- subsampler
class Conv1dSubsampler(nn.Module):
    """fairseq ``Conv1dSubsampler``: stride-2 Conv1d + GLU, repeated.

    Channel widths: ``in -> mid`` (GLU -> ``mid/2``), ..., ``-> 2*out`` (GLU -> ``out``).

    Args:
        in_channels: input feature size (``n_mels``).
        mid_channels: conv output width of the inner layers (before GLU; even).
        out_channels: output width ``D``.
        num_layers: number of stride-2 convolutions (default 2, i.e. 4x subsampling).
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, num_layers: int = 2) -> None:
        super().__init__()
        if min(in_channels, mid_channels, out_channels, num_layers) < 1:
            raise ValueError("subsampler sizes must be positive")
        if num_layers > 1 and mid_channels % 2 != 0:
            raise ValueError(f"mid_channels must be even (GLU), got {mid_channels}")
        self.num_layers = num_layers
        layers = []
        for i in range(num_layers):
            c_in = in_channels if i == 0 else mid_channels // 2
            c_out = mid_channels if i < num_layers - 1 else 2 * out_channels
            layers.append(
                nn.Conv1d(
                    c_in,
                    c_out,
                    _SUBSAMPLER_KERNEL,
                    stride=_SUBSAMPLER_STRIDE,
                    padding=_SUBSAMPLER_KERNEL // 2,
                )
            )
        self.conv_layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Subsample.

        Args:
            x: (B, T, C_in) features.
            lengths: (B,) valid lengths.

        Returns:
            ``(y (B, T', D), out_lengths (B,))`` with ``T' = ceil(T/4)`` for 2 layers;
            padded frames of ``y`` are zero.
        """
        cur_lengths = lengths.long()
        h = x.transpose(1, 2)  # (B, C, T)
        for conv in self.conv_layers:
            mask = lengths_to_padding_mask(cur_lengths, h.size(-1))
            h = h.masked_fill(mask.unsqueeze(1), 0.0)
            h = F.glu(conv(h), dim=1)
            cur_lengths = subsampled_lengths(cur_lengths, 1)
        mask = lengths_to_padding_mask(cur_lengths, h.size(-1))
        h = h.masked_fill(mask.unsqueeze(1), 0.0)
        return h.transpose(1, 2), cur_lengths


# ---------------------------------------------------------------------------- blocks
class FeedForwardModule(nn.Module):
    """Conformer FFN: LayerNorm, Linear(D, F), SiLU, dropout, Linear(F, D), dropout. (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.dropout(F.silu(self.linear1(self.layer_norm(x))))
        return self.dropout(self.linear2(h))


DEPTHWISE_BLOCK = 16
"""Output frames per block of :func:`depthwise_conv1d` on a CPU (fastest of 8-24 on this project's
2-core AMD EPYC, for the training and SPES batch shapes; README "Kernels");
0 = oneDNN's own depthwise kernel (``F.conv1d``), the baseline that the benchmarks time beside it
(:func:`depthwise_block`)."""


@contextmanager
def depthwise_block(block: int) -> Iterator[None]:
    """Within the block, :class:`ConvolutionModule` runs :func:`depthwise_conv1d` with ``block``
    (0 = ``F.conv1d``): ``tools/bench_train.py`` / ``tools/bench_spes.py --depthwise-baseline``."""
    global DEPTHWISE_BLOCK
    if block < 0:
        raise ValueError(f"depthwise block must be >= 0, got {block}")
    saved, DEPTHWISE_BLOCK = DEPTHWISE_BLOCK, block
    try:
        yield
    finally:
        DEPTHWISE_BLOCK = saved


def depthwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, block: int | None = None) -> Tensor:
    """Depthwise 'same' convolution ``F.conv1d(x, weight, bias, padding=K // 2, groups=C)`` of
    ``x`` (B, C, T) with ``weight`` (C, 1, K), K odd, computed as batched matrix products.

    On a CPU, oneDNN's depthwise kernel runs the Conformer's K = 31 convolution at well under a
    GFLOP/s; here the time axis is cut into blocks of ``block`` output frames, each block reads a
    window of ``block + K - 1`` padded input frames (``Tensor.unfold``, a view), and one
    ``torch.bmm`` per call multiplies the windows of every channel by that channel's banded
    (Toeplitz) matrix ``A[c, j, l] = weight[c, 0, j - l]`` (0 where ``j - l`` is outside
    ``0 … K-1``).  Output frame ``t = n·block + l`` is ``sum_k weight[c, 0, k] · x_pad[t + k]``,
    the cross-correlation ``F.conv1d`` computes, over the same terms in the same order of ``k``
    (the band's zeros add exact zeros): in fp32 the result equals ``F.conv1d``'s to rounding
    (``tests/unit/test_model.py``).  Autograd flows through ``unfold``/``bmm`` to ``x`` and,
    via the band's gather, to ``weight``.  Other devices call ``F.conv1d`` (cuDNN's depthwise
    kernel is fast).  ``block`` defaults to :data:`DEPTHWISE_BLOCK`; 0 calls ``F.conv1d``."""
    if x.dim() != 3 or weight.dim() != 3 or weight.size(1) != 1 or weight.size(0) != x.size(1):
        raise ValueError(
            f"depthwise_conv1d needs x (B, C, T) and weight (C, 1, K), got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    k = weight.size(-1)
    if k % 2 == 0:
        raise ValueError(f"depthwise_conv1d needs an odd kernel, got {k}")
    block = DEPTHWISE_BLOCK if block is None else block
    if x.device.type != "cpu" or block == 0:
        return F.conv1d(x, weight, bias, padding=k // 2, groups=x.size(1))
    b, c, t = x.shape
    n = -(-t // block)
    span = block + k - 1
    windows = F.pad(x, (k // 2, n * block + k - 1 - t - k // 2)).unfold(2, span, block)  # (B, C, n, span)
    offset = torch.arange(span, device=x.device)[:, None] - torch.arange(block, device=x.device)[None, :]
    band = weight[:, 0, offset.clamp(0, k - 1)] * ((offset >= 0) & (offset < k))  # (C, span, block)
    windows = windows.permute(1, 0, 2, 3).reshape(c, b * n, span)
    y = torch.bmm(windows, band)  # (C, B n, block); bf16 under autocast, as F.conv1d would be
    y = y.reshape(c, b, n * block)[:, :, :t].permute(1, 0, 2)
    return y if bias is None else y + bias.to(y.dtype)[:, None]


class ConvolutionModule(nn.Module):
    """Conformer convolution module.

    LayerNorm, pointwise conv D->2D, GLU, (zero padded frames), depthwise conv (kernel K,
    groups D, 'same' padding), BatchNorm1d, SiLU, pointwise conv D->D, dropout.
    (B, T, D) -> (B, T, D).
    """

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"conv kernel size must be odd and positive, got {kernel_size}")
        self.layer_norm = nn.LayerNorm(d_model)
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model)
        self.batch_norm = nn.BatchNorm1d(d_model)
        self.pointwise2 = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, T, D); padding_mask: bool (B, T), True = padded."""
        h = self.layer_norm(x).transpose(1, 2)  # (B, D, T)
        h = F.glu(self.pointwise1(h), dim=1)
        if padding_mask is not None:
            h = h.masked_fill(padding_mask.unsqueeze(1), 0.0)
        h = F.silu(self.batch_norm(depthwise_conv1d(h, self.depthwise.weight, self.depthwise.bias)))
        h = self.pointwise2(h)
        return self.dropout(h.transpose(1, 2))


def relative_shift(scores: Tensor) -> Tensor:
    """(..., T, 2T-1) scores per (query, relative distance) -> (..., T, T) per (query, key).

    Column ``c`` of row ``i`` holds distance ``T-1-c``; key ``j`` seen from query ``i`` has distance
    ``i - j``, i.e. column ``(T-1) - i + j``.  In a contiguous (T, 2T-1) block that element sits
    at ``i (2T-1) + (T-1) - i + j = (T-1) + i (2T-2) + j``: a strided view (row stride ``2T-2``,
    offset ``T-1``): the shift is a view of the contiguous scores, element for element the
    gather ``scores[..., i, (T-1) - i + j]``, without computing or reading an index per element."""
    t = scores.size(-2)
    if scores.size(-1) != 2 * t - 1:
        raise ValueError(f"scores must be (..., T, 2T-1), got {tuple(scores.shape)}")
    scores = scores.contiguous()
    stride = (*scores.stride()[:-2], 2 * t - 2, 1)
    return scores.as_strided((*scores.shape[:-1], t), stride, scores.storage_offset() + t - 1)


class RelPositionMultiHeadAttention(nn.Module):
    """Transformer-XL style self-attention with relative positions.

    ``score[i, j] = ((q_i + u) . k_j + (q_i + v) . W_pos p_{i-j}) / sqrt(D/H)``, with
    ``p_r`` from :func:`relative_positional_encoding`; padded keys are masked.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.pos_proj = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(num_heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(num_heads, self.head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x: Tensor, pos_emb: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Self-attention.

        Args:
            x: (B, T, D).
            pos_emb: (2T - 1, D) relative position embeddings (distances ``T-1 .. -(T-1)``).
            padding_mask: bool (B, T), True = padded frame.

        Returns:
            (B, T, D)
        """
        b, t, d = x.shape
        if pos_emb.shape != (2 * t - 1, d):
            raise ValueError(f"pos_emb must be ({2 * t - 1}, {d}), got {tuple(pos_emb.shape)}")
        h, dh = self.num_heads, self.head_dim
        q = self.q_proj(x).view(b, t, h, dh)
        k = self.k_proj(x).view(b, t, h, dh).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, dh).transpose(1, 2)
        p = self.pos_proj(pos_emb).view(2 * t - 1, h, dh)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, Dh)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        # position scores for every (query, relative distance): (B, H, T, 2T-1); the same einsum as
        # ever (a matmul would round some shapes differently), then a copy-free shift
        bd_full = torch.einsum("bhid,khd->bhik", q_v, p)
        bias = relative_shift(bd_full) / math.sqrt(dh)
        if padding_mask is not None:
            bias = bias.masked_fill(padding_mask[:, None, None, :], float("-inf"))
        dropout_p = self.dropout if self.training else 0.0
        out = attention_product(q_u, k, v, attn_mask=bias.to(q_u.dtype), dropout_p=dropout_p)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))


class ConformerLayer(nn.Module):
    """Pre-norm macaron Conformer layer. (B, T, D) -> (B, T, D)."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.ffn1 = FeedForwardModule(d_model, ffn_dim, dropout)
        self.attn_norm = nn.LayerNorm(d_model)
        self.self_attn = RelPositionMultiHeadAttention(d_model, num_heads, dropout)
        self.conv = ConvolutionModule(d_model, kernel_size, dropout)
        self.ffn2 = FeedForwardModule(d_model, ffn_dim, dropout)
        self.final_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, T, D); pos_emb: (2T-1, D); padding_mask: bool (B, T), True = padded."""
        x = x + 0.5 * self.ffn1(x)
        x = x + self.dropout(self.self_attn(self.attn_norm(x), pos_emb, padding_mask))
        x = x + self.conv(x, padding_mask)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


# ---------------------------------------------------------------------------- encoder
@dataclass
class EncoderOutput:
    """Result of :meth:`ConformerEncoder.forward`.

    Attributes:
        states: (B, T', D) output of the last layer; padded frames are 0.
        lengths: (B,) long, valid lengths ``T'_b = ceil(T_b / 4)``.
        padding_mask: bool (B, T'), True = padded frame.
        intermediate: (B, T', D) output of layer ``ctc_src_layer`` (1-based) or None.
    """

    states: Tensor
    lengths: Tensor
    padding_mask: Tensor
    intermediate: Tensor | None = None


class ConformerEncoder(nn.Module):
    """Conformer encoder: subsampler, ``sqrt(D)`` scaling, dropout, Conformer layers.

    Args:
        n_mels: input feature size.
        d_model: ``D``.
        num_layers: number of Conformer layers.
        num_heads: attention heads.
        ffn_dim: FFN hidden size.
        conv_kernel: depthwise conv kernel size (odd).
        conv_channels: subsampler inner conv width (fairseq ``conv_channels``).
        dropout: dropout probability.
        intermediate_layer: 1-based layer whose output is returned as
            ``EncoderOutput.intermediate`` (0/None: none).
    """

    def __init__(
        self,
        n_mels: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        conv_kernel: int = 31,
        conv_channels: int = 1024,
        dropout: float = 0.1,
        intermediate_layer: int | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if intermediate_layer is not None and not 0 <= intermediate_layer <= num_layers:
            raise ValueError(f"intermediate_layer must be in [0, {num_layers}], got {intermediate_layer}")
        if d_model % 2 != 0:
            raise ValueError(f"d_model must be even, got {d_model}")
        self.n_mels = n_mels
        self.d_model = d_model
        self.intermediate_layer = intermediate_layer or 0
        self.subsample = Conv1dSubsampler(n_mels, conv_channels, d_model)
        self.embed_scale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, num_heads, ffn_dim, conv_kernel, dropout) for _ in range(num_layers)
        )

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """(B,) input frame counts -> (B,) encoder frame counts ``ceil(T/4)``."""
        return subsampled_lengths(lengths, self.subsample.num_layers)

    def forward(self, features: Tensor, lengths: Tensor) -> EncoderOutput:
        """Encode.

        Args:
            features: (B, T, n_mels) float.
            lengths: (B,) integer valid lengths in ``[1, T]``.

        Returns:
            :class:`EncoderOutput` with states (B, T', D), ``T' = ceil(T/4)``.
        """
        _check_features(features, lengths, self.n_mels)
        x, out_lengths = self.subsample(features, lengths)
        padding_mask = lengths_to_padding_mask(out_lengths, x.size(1))
        x = self.dropout(self.embed_scale * x)
        pos_emb = self.dropout(
            relative_positional_encoding(x.size(1), self.d_model, device=x.device, dtype=x.dtype)
        )
        intermediate: Tensor | None = None
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x, pos_emb, padding_mask)
            if index == self.intermediate_layer:
                intermediate = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return EncoderOutput(
            states=x, lengths=out_lengths, padding_mask=padding_mask, intermediate=intermediate
        )
