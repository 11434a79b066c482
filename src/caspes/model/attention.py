"""Multi-head attention for the Transformer decoder (self- and cross-attention).

The module has two numerically equivalent paths:

* the default path calls :func:`torch.nn.functional.scaled_dot_product_attention`
  (fused kernels, used for training and plain inference);
* when the caller passes ``need_weights=True`` the softmax is computed explicitly and
  the attention weights ``(B, H, I, T)`` are returned as well.  Keys that are masked
  out (padding, future positions) receive a score of ``-inf`` before the softmax, so
  their weight is exactly ``0``.

Masks follow one convention throughout the package:

* ``key_padding_mask``: bool ``(B, T)``, ``True`` marks a *padded* (ignored) key;
* ``causal=True``: query ``i`` may attend to key ``j`` iff ``j <= i + (T - I)``, i.e. the
  mask is aligned to the bottom-right corner.  For ``I == T`` this is the usual causal
  mask; for incremental decoding (``I`` new queries after ``T - I`` cached keys) it lets
  every new query see the whole cached prefix.

The projected keys/values can be computed once with :meth:`MultiHeadAttention.project_kv`
and re-used with :meth:`MultiHeadAttention.attend` (key/value caching).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiHeadAttention", "attention_product", "causal_mask", "fp32_attention"]

_FP32_ATTENTION = False


@contextmanager
def fp32_attention(enabled: bool = True) -> Iterator[None]:
    """Within the block, :func:`attention_product` runs in float32 even under autocast.

    Autocast runs ``scaled_dot_product_attention`` in bf16, and on this project's CPU (AMD EPYC,
    AVX512-BF16, torch 2.11) the bf16 kernel's backward pass is several times slower than the
    float32 one, while bf16 linear layers and matrix products are faster than float32
    (``tools/bench_train.py --bf16`` times both policies). The block casts the query, key, value
    and a float mask to float32 and turns autocast off for the product alone; the result is
    float32, and the next linear layer casts it back under autocast. Outside such a block (the
    default) nothing changes.
    """
    global _FP32_ATTENTION
    previous = _FP32_ATTENTION
    _FP32_ATTENTION = enabled
    try:
        yield
    finally:
        _FP32_ATTENTION = previous


def attention_product(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> Tensor:
    """:func:`torch.nn.functional.scaled_dot_product_attention`, in float32 under autocast
    within :func:`fp32_attention`."""
    if _FP32_ATTENTION and torch.is_autocast_enabled(q.device.type):
        with torch.autocast(q.device.type, enabled=False):
            if attn_mask is not None and attn_mask.is_floating_point():
                attn_mask = attn_mask.float()
            return F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
            )
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
    )


def causal_mask(num_queries: int, num_keys: int, device: torch.device | None = None) -> Tensor:
    """Bottom-right aligned causal mask.

    Args:
        num_queries: ``I``, number of query positions (the last ``I`` positions).
        num_keys: ``T``, number of key positions (``T >= I``).
        device: device of the result.

    Returns:
        bool ``(I, T)``; ``True`` where query ``i`` is *allowed* to attend key ``j``.
    """
    if num_queries < 1 or num_keys < num_queries:
        raise ValueError(f"causal mask needs 1 <= num_queries <= num_keys, got {num_queries}, {num_keys}")
    offset = num_keys - num_queries
    q = torch.arange(num_queries, device=device).unsqueeze(1)
    k = torch.arange(num_keys, device=device).unsqueeze(0)
    return k <= q + offset


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention (fairseq ``MultiheadAttention`` layout).

    Args:
        d_model: model width ``D`` (queries, keys and values all have width ``D``).
        num_heads: ``H``; must divide ``D``.
        dropout: dropout on the attention probabilities (training only).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model < 1 or num_heads < 1:
            raise ValueError(f"d_model and num_heads must be positive, got {d_model}, {num_heads}")
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        gain = 1.0 / math.sqrt(2.0)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight, gain=gain)
            nn.init.zeros_(proj.bias)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    # ------------------------------------------------------------------ helpers
    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, T, D) -> (B, H, T, D/H)."""
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: Tensor) -> Tensor:
        """(B, H, T, D/H) -> (B, T, D)."""
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, self.d_model)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Project ``source`` (B, T, D) to keys and values, each (B, H, T, D/H)."""
        if source.dim() != 3 or source.size(-1) != self.d_model:
            raise ValueError(f"expected source (B, T, {self.d_model}), got {tuple(source.shape)}")
        return self._split_heads(self.k_proj(source)), self._split_heads(self.v_proj(source))

    @staticmethod
    def _allowed_mask(
        batch: int,
        num_queries: int,
        num_keys: int,
        key_padding_mask: Tensor | None,
        causal: bool,
        device: torch.device,
    ) -> Tensor | None:
        """Combine padding and causal masks into a bool mask (B|1, 1, I, T); True = attend."""
        allowed: Tensor | None = None
        if causal:
            allowed = causal_mask(num_queries, num_keys, device=device)[None, None]
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, num_keys):
                raise ValueError(
                    f"key_padding_mask must be ({batch}, {num_keys}), got {tuple(key_padding_mask.shape)}"
                )
            if key_padding_mask.dtype != torch.bool:
                raise ValueError("key_padding_mask must be a bool tensor (True = padded)")
            valid = (~key_padding_mask)[:, None, None, :]
            allowed = valid if allowed is None else allowed & valid
        return allowed

    # ------------------------------------------------------------------ main API
    def attend(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend with already projected keys and values.

        Args:
            query: (B, I, D) un-projected query states.
            key: (B, H, T, D/H) projected keys (from :meth:`project_kv`).
            value: (B, H, T, D/H) projected values.
            key_padding_mask: bool (B, T), True = padded key, or None.
            causal: apply the bottom-right aligned causal mask.
            need_weights: compute the softmax explicitly and return the weights.

        Returns:
            ``(output (B, I, D), weights)`` where ``weights`` is float32 (B, H, I, T)
            (before dropout) if ``need_weights`` else ``None``.
        """
        if query.dim() != 3 or query.size(-1) != self.d_model:
            raise ValueError(f"expected query (B, I, {self.d_model}), got {tuple(query.shape)}")
        b, i, _ = query.shape
        if key.dim() != 4 or key.shape[0] != b or key.shape[1] != self.num_heads:
            raise ValueError(f"key must be (B={b}, H={self.num_heads}, T, Dh), got {tuple(key.shape)}")
        if value.shape != key.shape:
            raise ValueError(f"value shape {tuple(value.shape)} != key shape {tuple(key.shape)}")
        t = key.shape[2]
        q = self._split_heads(self.q_proj(query))
        dropout_p = self.dropout if self.training else 0.0
        allowed = self._allowed_mask(b, i, t, key_padding_mask, causal, query.device)

        if not need_weights:
            if causal and key_padding_mask is None and i == t:
                out = attention_product(q, key, value, dropout_p=dropout_p, is_causal=True)
            else:
                out = attention_product(q, key, value, attn_mask=allowed, dropout_p=dropout_p)
            return self.out_proj(self._merge_heads(out)), None

        scale = 1.0 / math.sqrt(self.head_dim)
        scores = torch.matmul(q.float(), key.float().transpose(-2, -1)) * scale
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        probs = F.dropout(weights, p=dropout_p, training=self.training)
        out = torch.matmul(probs.to(value.dtype), value)
        return self.out_proj(self._merge_heads(out)), weights

    def forward(
        self,
        query: Tensor,
        source: Tensor,
        key_padding_mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attention of ``query`` (B, I, D) over ``source`` (B, T, D).

        See :meth:`attend` for the masks and the returned ``(output, weights)``.
        """
        key, value = self.project_kv(source)
        return self.attend(query, key, value, key_padding_mask, causal, need_weights)
