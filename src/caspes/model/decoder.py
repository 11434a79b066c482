"""Pre-norm Transformer decoder (fairseq ``TransformerDecoder`` with
``decoder_normalize_before=True``) with cross-attention weights and a key/value cache.

Token input ``(B, I)``:

* embedding ``sqrt(D) * E[token]`` plus fairseq sinusoidal positions: non-padding
  tokens get positions ``pad_id + 1, pad_id + 2, ...`` (fairseq ``make_positions``),
  padding tokens get position ``pad_id`` whose embedding is the zero vector; the
  sinusoid layout is fairseq's ``[sin(p w_0..w_{D/2-1}), cos(p w_0..w_{D/2-1})]`` with
  ``w_k = 10000^(-k / (D/2 - 1))``;
* dropout;
* per layer: ``x + SelfAttn(LN(x))`` (causal), ``x + CrossAttn(LN(x), enc)`` (encoder
  padding masked), ``x + FFN(LN(x))`` (ReLU);
* final LayerNorm and output projection (no bias; optionally tied to the embedding).

Decoder inputs are right-padded with ``pad_id``.  The target convention (fairseq) is
``decoder_input = [EOS, y_1 .. y_n]`` and ``target = [y_1 .. y_n, EOS]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiHeadAttention

__all__ = [
    "DecoderCache",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "make_positions",
    "sinusoidal_embedding",
]


def make_positions(tokens: Tensor, pad_id: int) -> Tensor:
    """fairseq positions: ``pad_id + 1 + index`` for non-pad tokens, ``pad_id`` for pads.

    Args:
        tokens: (B, I) long.

    Returns:
        (B, I) long.
    """
    mask = tokens.ne(pad_id).long()
    return torch.cumsum(mask, dim=1) * mask + pad_id


def sinusoidal_embedding(positions: Tensor, d_model: int, pad_id: int) -> Tensor:
    """fairseq ``SinusoidalPositionalEmbedding`` values for integer ``positions``.

    Args:
        positions: (...) long.
        d_model: embedding size ``D`` (>= 4).
        pad_id: position whose embedding is all zeros.

    Returns:
        (..., D) float32.
    """
    if d_model < 4:
        raise ValueError(f"d_model must be >= 4, got {d_model}")
    half = d_model // 2
    scale = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, device=positions.device, dtype=torch.float32) * -scale)
    angles = positions.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if d_model % 2 == 1:
        emb = F.pad(emb, (0, 1))
    return emb.masked_fill(positions.eq(pad_id).unsqueeze(-1), 0.0)


@dataclass
class DecoderCache:
    """Key/value cache for incremental decoding.

    Attributes:
        length: number of decoder positions already processed.
        self_keys / self_values: per layer (B, H, length, D/H).
        cross_keys / cross_values: per layer (B, H, T', D/H) projected encoder states.
    """

    length: int = 0
    self_keys: list[Tensor] = field(default_factory=list)
    self_values: list[Tensor] = field(default_factory=list)
    cross_keys: list[Tensor] = field(default_factory=list)
    cross_values: list[Tensor] = field(default_factory=list)

    def reorder(self, new_order: Tensor) -> DecoderCache:
        """Select/reorder batch rows (beam search); ``new_order``: (B_new,) long indices."""
        if new_order.dim() != 1:
            raise ValueError(f"new_order must be 1-D, got shape {tuple(new_order.shape)}")

        def pick(tensors: list[Tensor]) -> list[Tensor]:
            return [t.index_select(0, new_order.to(t.device)) for t in tensors]

        return DecoderCache(
            length=self.length,
            self_keys=pick(self.self_keys),
            self_values=pick(self.self_values),
            cross_keys=pick(self.cross_keys),
            cross_values=pick(self.cross_values),
        )


class TransformerDecoderLayer(nn.Module):
    """Pre-norm decoder layer: causal self-attn, cross-attn, ReLU FFN. (B, I, D) -> (B, I, D)."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        self_kv: tuple[Tensor, Tensor] | None,
        cross_kv: tuple[Tensor, Tensor],
        encoder_padding_mask: Tensor | None,
        need_weights: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        """Run the layer on ``I`` new positions.

        Args:
            x: (B, I, D) states of the new positions.
            self_kv: cached self-attention (keys, values) (B, H, P, D/H) of the ``P``
                previous positions, or None.
            cross_kv: projected encoder (keys, values) (B, H, T', D/H).
            encoder_padding_mask: bool (B, T'), True = padded frame.
            need_weights: return the cross-attention weights.

        Returns:
            ``(y (B, I, D), self_kv (B, H, P+I, D/H) x2, cross weights (B, H, I, T') | None)``.
        """
        h = self.self_attn_norm(x)
        k_new, v_new = self.self_attn.project_kv(h)
        if self_kv is not None:
            k_new = torch.cat([self_kv[0], k_new], dim=2)
            v_new = torch.cat([self_kv[1], v_new], dim=2)
        attn, _ = self.self_attn.attend(h, k_new, v_new, causal=True)
        x = x + self.dropout(attn)

        h = self.cross_attn_norm(x)
        attn, weights = self.cross_attn.attend(
            h, cross_kv[0], cross_kv[1], key_padding_mask=encoder_padding_mask, need_weights=need_weights
        )
        x = x + self.dropout(attn)

        h = self.ffn_norm(x)
        h = self.fc2(self.dropout(F.relu(self.fc1(h))))
        x = x + self.dropout(h)
        return x, (k_new, v_new), weights


class TransformerDecoder(nn.Module):
    """Pre-norm Transformer decoder.

    Args:
        vocab_size: ``V``.
        d_model: ``D``.
        num_layers: ``L``.
        num_heads: ``H``.
        ffn_dim: FFN hidden size.
        dropout: dropout probability.
        pad_id: padding token id (embedding row and position are zero).
        max_positions: maximum decoder input length.
        tie_embeddings: share the output projection with the token embedding.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        pad_id: int = 1,
        max_positions: int = 1024,
        tie_embeddings: bool = False,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be in [0, {vocab_size}), got {pad_id}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.num_heads = num_heads
        self.pad_id = pad_id
        self.max_positions = max_positions
        self.embed_scale = math.sqrt(d_model)
        self.embed_tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed_tokens.weight, mean=0.0, std=d_model**-0.5)
        with torch.no_grad():
            self.embed_tokens.weight[pad_id].zero_()
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.output_projection = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.output_projection.weight = self.embed_tokens.weight
        else:
            nn.init.normal_(self.output_projection.weight, mean=0.0, std=d_model**-0.5)

    # ------------------------------------------------------------------ helpers
    def _check_inputs(self, tokens: Tensor, encoder_states: Tensor, encoder_padding_mask: Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"decoder tokens must be long (B, I), got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.size(1) < 1:
            raise ValueError("decoder input must have at least one position")
        if tokens.size(1) > self.max_positions:
            raise ValueError(
                f"decoder input length {tokens.size(1)} exceeds max_positions={self.max_positions}"
            )
        if encoder_states.dim() != 3 or encoder_states.size(-1) != self.d_model:
            raise ValueError(
                f"encoder_states must be (B, T', {self.d_model}), got {tuple(encoder_states.shape)}"
            )
        if encoder_states.size(0) != tokens.size(0):
            raise ValueError(f"batch mismatch: tokens B={tokens.size(0)}, encoder B={encoder_states.size(0)}")
        if encoder_padding_mask.shape != encoder_states.shape[:2] or encoder_padding_mask.dtype != torch.bool:
            raise ValueError(
                f"encoder_padding_mask must be bool {tuple(encoder_states.shape[:2])}, "
                f"got {encoder_padding_mask.dtype} {tuple(encoder_padding_mask.shape)}"
            )

    def _embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens, positions: (B, I) -> (B, I, D)."""
        x = self.embed_scale * self.embed_tokens(tokens)
        x = x + sinusoidal_embedding(positions, self.d_model, self.pad_id).to(x.dtype)
        return self.dropout(x)

    def _project_encoder(self, encoder_states: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [layer.cross_attn.project_kv(encoder_states) for layer in self.layers]

    def occluded_cross_kvs(
        self, clean_kvs: list[tuple[Tensor, Tensor]], keep: Tensor
    ) -> list[tuple[Tensor, Tensor]]:
        """Cross-attention keys and values of copies of one encoder output whose steps are zeroed
        where ``keep`` (bool (B, T')) is False, from the clean projections ``clean_kvs`` (per layer
        (1, H, T', D/H) x2, :meth:`_project_encoder` of the clean states): a zero row projects to
        the projection's bias, so a zeroed step's key and value are the bias and a kept step's the
        clean ones; no projection is computed per copy."""
        sel = keep[:, None, :, None]
        out = []
        for layer, (k, v) in zip(self.layers, clean_kvs, strict=True):
            attn = layer.cross_attn
            shape = (1, attn.num_heads, 1, attn.head_dim)
            bias_k = attn.k_proj.bias.to(k.dtype).view(shape)
            bias_v = attn.v_proj.bias.to(v.dtype).view(shape)
            out.append((torch.where(sel, k, bias_k), torch.where(sel, v, bias_v)))
        return out

    def forward_cross_kvs(
        self,
        tokens: Tensor,
        cross_kvs: list[tuple[Tensor, Tensor]],
        encoder_padding_mask: Tensor,
    ) -> Tensor:
        """Teacher-forced logits (B, I, V) over given cross-attention keys and values (per layer
        (B, H, T', D/H) x2), e.g. :meth:`occluded_cross_kvs`."""
        if tokens.dim() != 2 or tokens.dtype != torch.long or tokens.size(0) != encoder_padding_mask.size(0):
            raise ValueError(f"decoder tokens must be long (B, I) with B={encoder_padding_mask.size(0)}")
        x = self._embed(tokens, make_positions(tokens, self.pad_id))
        logits, _, _ = self._run(x, [None] * len(self.layers), cross_kvs, encoder_padding_mask, False)
        return logits

    def _run(
        self,
        x: Tensor,
        self_kvs: list[tuple[Tensor, Tensor] | None],
        cross_kvs: list[tuple[Tensor, Tensor]],
        encoder_padding_mask: Tensor,
        need_weights: bool,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]], Tensor | None]:
        new_kvs: list[tuple[Tensor, Tensor]] = []
        weights: list[Tensor] = []
        for layer, self_kv, cross_kv in zip(self.layers, self_kvs, cross_kvs, strict=True):
            x, kv, w = layer(x, self_kv, cross_kv, encoder_padding_mask, need_weights)
            new_kvs.append(kv)
            if w is not None:
                weights.append(w)
        logits = self.output_projection(self.final_norm(x))
        stacked = torch.stack(weights, dim=1) if need_weights else None
        return logits, new_kvs, stacked

    # ------------------------------------------------------------------ API
    def forward(
        self,
        tokens: Tensor,
        encoder_states: Tensor,
        encoder_padding_mask: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding.

        Args:
            tokens: (B, I) long decoder input (right-padded with ``pad_id``).
            encoder_states: (B, T', D).
            encoder_padding_mask: bool (B, T'), True = padded frame.
            need_weights: also return cross-attention weights.

        Returns:
            ``(logits (B, I, V), cross_attention (B, L, H, I, T') | None)``; weights on
            padded frames are exactly 0 and every row sums to 1.
        """
        self._check_inputs(tokens, encoder_states, encoder_padding_mask)
        x = self._embed(tokens, make_positions(tokens, self.pad_id))
        cross_kvs = self._project_encoder(encoder_states)
        logits, _, weights = self._run(
            x, [None] * len(self.layers), cross_kvs, encoder_padding_mask, need_weights
        )
        return logits, weights

    def step(
        self,
        prefix: Tensor,
        encoder_states: Tensor,
        encoder_padding_mask: Tensor,
        cache: DecoderCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, DecoderCache, Tensor | None]:
        """Incremental decoding with a key/value cache.

        Only the positions of ``prefix`` beyond ``cache.length`` are computed; with
        ``cache=None`` the whole prefix is processed and a fresh cache is built.
        ``prefix`` should not contain padding (beam-search prefixes never do).

        Args:
            prefix: (B, I) long, the whole decoder input so far.
            encoder_states: (B, T', D) (rows aligned with the cache).
            encoder_padding_mask: bool (B, T').
            cache: cache returned by the previous call, or None.
            need_weights: return the cross-attention of the last query.

        Returns:
            ``(logits of the last position (B, V), updated cache, cross-attention of the
            last query (B, L, H, T') | None)``.
        """
        self._check_inputs(prefix, encoder_states, encoder_padding_mask)
        if cache is None:
            cache = DecoderCache()
            cross_kvs = self._project_encoder(encoder_states)
            self_kvs: list[tuple[Tensor, Tensor] | None] = [None] * len(self.layers)
        else:
            if len(cache.cross_keys) != len(self.layers):
                raise ValueError("cache does not match this decoder")
            if not 0 < cache.length < prefix.size(1):
                raise ValueError(
                    f"prefix length {prefix.size(1)} must exceed the cached length {cache.length}"
                )
            if cache.cross_keys[0].size(0) != prefix.size(0):
                raise ValueError(
                    f"batch mismatch: cache B={cache.cross_keys[0].size(0)}, prefix B={prefix.size(0)}"
                )
            cross_kvs = list(zip(cache.cross_keys, cache.cross_values, strict=True))
            self_kvs = list(zip(cache.self_keys, cache.self_values, strict=True))
        start = cache.length
        positions = make_positions(prefix, self.pad_id)[:, start:]
        x = self._embed(prefix[:, start:], positions)
        logits, new_kvs, weights = self._run(x, self_kvs, cross_kvs, encoder_padding_mask, need_weights)
        new_cache = DecoderCache(
            length=prefix.size(1),
            self_keys=[kv[0] for kv in new_kvs],
            self_values=[kv[1] for kv in new_kvs],
            cross_keys=[kv[0] for kv in cross_kvs],
            cross_values=[kv[1] for kv in cross_kvs],
        )
        last_weights = weights[:, :, :, -1, :] if weights is not None else None
        return logits[:, -1, :], new_cache, last_weights
