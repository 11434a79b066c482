"""SPES occlusion saliency: input maps SM^X (I, T, F) and encoder-output maps SM^H (I, T').

Method (``spec/spes_reference.md`` §1-§3; the paper §3.2, §4.3):

* The model is teacher-forced on its *own* hypothesis: ``decoder_input = [EOS, <lang>, y_1 .. y_n]``,
  every row ``i`` predicts ``target_ids[i]`` (language tag, tokens, EOS: ``I = n + 2`` rows).
* Clean pass: ``P[i] = softmax(logits)`` on the unperturbed input (fp32 log space).
* SM^X: mask ``m`` uses one SLIC level (the budget ``N_X`` is split equally over the levels, mask
  ``k`` uses level ``k // (N_X // L)``; ``L * (N_X // L)`` masks in all) and keeps each segment with
  probability ``1 - p`` (``u >= p``, ``u ~ U[0, 1)``).  The perturbed input is ``X * M`` (0 =
  utterance mean in the CMVN-normalised space).  SM^H: the encoder runs once, each mask keeps every
  encoder time step with probability ``1 - p_H`` and zeroes whole D-vectors; only the decoder runs
  per mask.  A zeroed step's cross-attention key and value are the projections' biases, so for
  our models (``encoder_occlusion``) the keys and values are projected once per utterance and
  each mask selects, per step, the clean projection or the bias: the same maps (up to float
  rounding of the projection; tested to 1e-6) without re-projecting the encoder per mask.
* Score of mask ``m`` on row ``i``: ``s_m[i] = KL(P[i] || Q_m[i])`` over the full vocabulary, fp32.
* Accumulation on the *occluded* elements: ``SM[i, e] = sum_m s_m[i] D_m[e] / sum_m D_m[e]`` with
  ``D_m = 1 - M_m`` (0 where an element was never occluded).  With SLIC masks ``D_m`` is constant
  on each segment, so the numerator is computed per level as ``S^T @ D_seg`` (I x segments) and
  scattered to the cells through the label map: exact, and never an N x I x T x F tensor.

Reliability: every mask also goes to one of two halves of the budget (:func:`mask_half`, the
parity of its index in its draw), and each half's numerator and counts are accumulated too, so
every map comes with two independent half-budget estimates (``SaliencyResult.halves``) for its
split-half reliability, without an extra forward pass.  ``prefixes`` returns the maps of the
first masks as well (a budget sweep from one run, :mod:`caspes.analysis.convergence`).

Speed: masks are drawn on the model's device, many per forward pass; the batch size adapts to the
device (free GPU memory, or a frame budget on CPU); bf16 autocast for the model is an option on
GPU and CPU (the KL and the accumulators stay fp32/fp64; the clean pass uses the same precision as
the perturbed ones).

Determinism: every utterance's masks come from a generator seeded with ``utterance_seed(seed,
uid)``, and a whole level's (or SM^H's) random draws are made in one call before batching, so the
maps do not depend on the batch size, the sharding or the order of utterances (on one device type;
CPU and CUDA generators differ).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.profiler import record_function

from caspes.explain.options import OcclusionOptions
from caspes.model.inference import (
    autocast_bf16,
    check_decoder_input,
    eval_mode,
    model_device_dtype,
    resolve_bf16,
)

__all__ = [
    "OcclusionOptions",
    "SaliencyResult",
    "utterance_seed",
    "masks_per_level",
    "kl_rows",
    "clean_log_probs",
    "auto_batch_size",
    "explain_input",
    "explain_encoder",
    "PHASES",
]

log = logging.getLogger(__name__)

#: Profiler labels (``torch.profiler.record_function``) of the engine's phases, for a per-phase
#: profile (``tools/bench_spes.py``); outside a profiler they cost a few microseconds per batch.
PHASES = {
    "mask": "spes.mask",  # mask draws, segment-to-cell expansion, the masked input
    "encoder": "spes.encoder",
    "decoder": "spes.decoder",
    "kl": "spes.kl",  # log-softmax over the vocabulary and the KL to the clean pass
    "accumulate": "spes.accumulate",  # numerators and counts (full map and halves)
}


@dataclass
class SaliencyResult:
    """Raw (un-normalised) saliency of one utterance.

    Attributes:
        saliency: float32 (I, T, F) for SM^X or (I, T') for SM^H: mean KL over the masks that
            occluded each element (0 where never occluded).
        counts: int64 (T, F) or (T',): how many masks occluded each element.
        n_masks: masks actually used.
        batch_size: masks per forward pass that was used.
        halves: float32 (2, I, T, F) or (2, I, T'): the same estimate from each half of the masks
            (:func:`mask_half`), for the split-half reliability of the map
            (:func:`caspes.analysis.correlation.split_half`); 0 where a half never occluded an
            element.  The full map is accumulated on its own, so it does not depend on the halves.
        prefixes: for each budget ``b`` asked for (``prefixes`` of :func:`explain_input` /
            :func:`explain_encoder`), the result of the first masks only (SM^X: the first
            ``b // L`` of every level; SM^H: the first ``b``), as a map from those masks alone
            would be: a budget sweep for the price of its largest budget.
    """

    saliency: np.ndarray
    counts: np.ndarray
    n_masks: int
    batch_size: int
    halves: np.ndarray | None = None
    prefixes: dict[int, SaliencyResult] = field(default_factory=dict)


# --------------------------------------------------------------------------- small pieces
def utterance_seed(seed: int, uid: str) -> int:
    """A 63-bit seed from the configured seed and the utterance id (stable across runs/machines)."""
    digest = hashlib.sha256(f"{int(seed)}:{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def mask_half(index: Tensor) -> Tensor:
    """Which half (0 or 1) of the budget a mask belongs to: the parity of its index in its draw
    (its SLIC level for SM^X, the whole budget for SM^H).  Masks are independent draws, so the
    two halves are two independent estimates of the map, each from half of the masks."""
    return index % 2


def _accumulate_halves(num: Tensor, cnt: Tensor, start: int, scores: Tensor, occluded: Tensor) -> None:
    """Add a batch of masks (``scores`` (b, I), ``occluded`` (b, E) float64, masks ``start`` ..
    ``start + b - 1``) to the per-half numerators ``num`` (2, I, E) and counts ``cnt`` (2, E)."""
    half = mask_half(torch.arange(start, start + scores.size(0), device=scores.device))
    for h in (0, 1):
        rows = half == h
        num[h].add_(scores[rows].T @ occluded[rows])
        cnt[h].add_(occluded[rows].sum(0))


def _mean_map(num: Tensor, cnt: Tensor) -> Tensor:
    return torch.where(cnt > 0, num / cnt.clamp_min(1), torch.zeros_like(num))


def masks_per_level(n_masks: int, levels: int) -> int:
    """Masks per SLIC level: ``n_masks // levels`` (the reference uses 6666 x 3 = 19998 of 20000)."""
    if levels < 1:
        raise ValueError("need at least one segmentation level")
    per = n_masks // levels
    if per < 1:
        raise ValueError(f"n_masks={n_masks} is fewer than the {levels} segmentation levels")
    return per


def kl_rows(clean_log_probs: Tensor, log_probs: Tensor) -> Tensor:
    """``KL(P || Q)`` per mask and row, summed over the vocabulary, in fp32.

    Args:
        clean_log_probs: (I, V) log P of the clean input.
        log_probs: (B, I, V) log Q of the perturbed inputs.

    Returns:
        (B, I) float32, >= 0 (rounding below 0 is clipped).
    """
    p_log = clean_log_probs.float().unsqueeze(0)
    q_log = log_probs.float()
    terms = p_log.exp() * (p_log - q_log)
    terms = torch.where(torch.isneginf(p_log), torch.zeros_like(terms), terms)  # 0 * log 0 = 0
    return terms.sum(-1).clamp_min_(0.0)


def _decoder_tensor(decoder_input: Sequence[int], dims: Any, device: torch.device) -> Tensor:
    """(1, I) long tensor of a decoder input checked as for cross-attention extraction."""

    return torch.tensor([check_decoder_input(decoder_input, dims)], dtype=torch.long, device=device)


def _features_tensor(
    features: np.ndarray | Tensor, dims: Any, device: torch.device, dtype: torch.dtype
) -> Tensor:
    x = torch.as_tensor(np.asarray(features) if not isinstance(features, Tensor) else features)
    if x.dim() != 2 or x.size(1) != dims.n_mels or x.size(0) < 1:
        raise ValueError(f"features must be (T, {dims.n_mels}), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features contain NaN or inf")
    return x.to(device=device, dtype=dtype)


def occlusion_context(model: Any, x: Tensor) -> tuple[Tensor | None, Any]:
    """(fill, context) for occluding the clean (T, F) input ``x`` of ``model``.

    Our models: fill None (occluded cells become 0, the utterance-CMVN mean) and no context. An
    adapted Hugging Face model (:mod:`caspes.hf.adapter`): fill = the utterance's per-bin mean of
    the model's own features, and a context in which every masked copy is padded as the clean
    input is (Whisper's fixed window)."""
    fill = model.occlusion_fill(x) if hasattr(model, "occlusion_fill") else None
    context = model.reference(x) if hasattr(model, "reference") else contextlib.nullcontext()
    return fill, context


def clean_log_probs(
    model: Any, features: Tensor, decoder: Tensor, autocast: bool | str = False
) -> tuple[Tensor, Any]:
    """Clean teacher-forced pass: ((I, V) fp32 log-probabilities, encoder output of the clean input)."""
    device = features.device
    lengths = torch.tensor([features.size(0)], device=device)
    with autocast_bf16(device, autocast):
        enc = model.encode(features.unsqueeze(0), lengths)
        logits = model.decode_teacher_forced(enc.states, enc.lengths, decoder).logits
    return torch.log_softmax(logits[0].float(), dim=-1), enc


# --------------------------------------------------------------------------- batch sizing
def auto_batch_size(
    device: torch.device,
    frames: int,
    options: OcclusionOptions,
    probe: Any = None,
) -> int:
    """Masks per forward pass.

    CPU: ``max(1, batch_frames // frames)`` (capped by ``max_batch_size``).  CUDA: ``probe(b)`` runs
    one batch of ``b`` masks; the peak memory it adds per mask is measured and the batch is sized
    to 70% of the free memory.
    """
    if options.batch_size is not None:
        return options.batch_size
    if device.type != "cuda" or probe is None:
        return int(max(1, min(options.max_batch_size, options.batch_frames // max(frames, 1))))
    trial = 8
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe(trial)
    torch.cuda.synchronize(device)
    per_mask = max(1, (torch.cuda.max_memory_allocated(device) - base) / trial)
    free, _ = torch.cuda.mem_get_info(device)
    size = int(0.7 * free / per_mask)
    return int(max(1, min(options.max_batch_size, size)))


def _cuts(prefixes: Sequence[int], total: int) -> list[int]:
    """Sorted distinct prefix lengths in (0, total], ending with ``total``."""
    bad = [c for c in prefixes if not 0 < c <= total]
    if bad:
        raise ValueError(f"prefix budgets {bad} are outside 1..{total} masks")
    return sorted(set(prefixes) | {total})


def _run_batches(total: int, batch_size: int, step: Any, start: int = 0) -> int:
    """Call ``step(start, stop)`` over ``range(start, total)`` in batches; on CUDA out-of-memory
    halve the batch and retry.  Returns the batch size finally used."""
    while start < total:
        stop = min(total, start + batch_size)
        try:
            step(start, stop)
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            log.warning("out of memory: retrying with %d masks per batch", batch_size)
            continue
        start = stop
    return batch_size


# --------------------------------------------------------------------------- SM^X
def explain_input(
    model: Any,
    features: np.ndarray | Tensor,
    decoder_input: Sequence[int],
    segmentations: Sequence[np.ndarray],
    options: OcclusionOptions,
    uid: str = "",
    prefixes: Sequence[int] = (),
) -> SaliencyResult:
    """SM^X of one utterance.

    Args:
        model: :class:`~caspes.model.S2TModel` (any device; eval and inference mode for the call).
        features: (T, F) utterance-CMVN filterbanks, as decoded.
        decoder_input: ``[EOS, <lang>, y_1 .. y_n]`` of the model's own hypothesis.
        segmentations: per level an integer (T, F) array of 0-based segment labels.
        options: :class:`OcclusionOptions` (``p`` = segment occlusion probability).
        uid: utterance id (part of the mask seed).
        prefixes: budgets (total masks, at most ``n_masks``) whose maps are also returned, from
            the first ``b // L`` masks of every level (:attr:`SaliencyResult.prefixes`).

    Returns:
        :class:`SaliencyResult` with saliency (I, T, F) and counts (T, F).
    """
    dims = model.dims
    device, dtype = model_device_dtype(model)
    bf16 = resolve_bf16(options.autocast_bf16, device)  # "auto" decided once, not per batch
    x = _features_tensor(features, dims, device, dtype)
    t, f = x.shape
    labels = []
    for k, lab in enumerate(segmentations):
        lab = np.asarray(lab)
        if lab.shape != (t, f):
            raise ValueError(f"{uid}: segmentation level {k} has shape {lab.shape}, features {(t, f)}")
        if lab.min() < 0:
            raise ValueError(f"{uid}: segmentation level {k} has negative labels")
        labels.append(torch.as_tensor(lab.astype(np.int64), device=device).reshape(-1))
    per_level = masks_per_level(options.n_masks, len(labels))
    level_cuts = _cuts([masks_per_level(b, len(labels)) for b in prefixes], per_level)
    snapshots: dict[int, list[tuple[Tensor, ...]]] = {c: [] for c in level_cuts}
    dec = _decoder_tensor(decoder_input, dims, device)
    n_rows = dec.size(1)
    gen = torch.Generator(device=device).manual_seed(utterance_seed(options.seed, uid))
    numerator = torch.zeros(n_rows, t * f, dtype=torch.float64, device=device)
    counts = torch.zeros(t * f, dtype=torch.float64, device=device)
    half_num = torch.zeros(2, n_rows, t * f, dtype=torch.float64, device=device)
    half_counts = torch.zeros(2, t * f, dtype=torch.float64, device=device)
    flat_x = x.reshape(-1)
    used_batch = 0
    fill, context = occlusion_context(model, x)
    flat_fill = None if fill is None else fill.expand(t, f).reshape(-1)
    with eval_mode(model), torch.inference_mode(), context:
        clean, _ = clean_log_probs(model, x, dec, bf16)

        def score(keep_cells: Tensor) -> Tensor:  # (b, T*F) bool -> (b, I) KL
            b = keep_cells.size(0)
            with record_function(PHASES["mask"]):
                if flat_fill is None:
                    batch = (flat_x * keep_cells.to(dtype)).view(b, t, f)
                else:
                    batch = torch.where(keep_cells, flat_x, flat_fill).view(b, t, f)
            lengths = torch.full((b,), t, device=device)
            with autocast_bf16(device, bf16):
                with record_function(PHASES["encoder"]):
                    enc = model.encode(batch, lengths)
                with record_function(PHASES["decoder"]):
                    logits = model.decode_teacher_forced(enc.states, enc.lengths, dec.expand(b, -1)).logits
            with record_function(PHASES["kl"]):
                return kl_rows(clean, torch.log_softmax(logits.float(), dim=-1))

        def probe(b: int) -> None:
            score(torch.ones(b, t * f, dtype=torch.bool, device=device))

        batch_size = auto_batch_size(device, t, options, probe)
        for lab in labels:
            n_seg = int(lab.max()) + 1
            with record_function(PHASES["mask"]):
                keep = torch.rand(per_level, n_seg, generator=gen, device=device) >= options.p  # (N_l, S)
            seg_num = torch.zeros(n_rows, n_seg, dtype=torch.float64, device=device)
            seg_half = torch.zeros(2, n_rows, n_seg, dtype=torch.float64, device=device)
            seg_half_counts = torch.zeros(2, n_seg, dtype=torch.float64, device=device)

            def step(
                start: int, stop: int, keep=keep, seg_num=seg_num, lab=lab, sh=seg_half, shc=seg_half_counts
            ) -> None:
                k = keep[start:stop]
                with record_function(PHASES["mask"]):
                    cells = k[:, lab]
                s = score(cells).double()  # (b, I)
                with record_function(PHASES["accumulate"]):
                    occluded = (~k).double()
                    seg_num.add_(s.T @ occluded)  # (I, S)
                    _accumulate_halves(sh, shc, start, s, occluded)

            done = 0
            for cut in level_cuts:
                batch_size = used_batch = _run_batches(cut, batch_size, step, start=done)
                done = cut
                if cut < per_level:  # a prefix: this level's accumulators after its first `cut` masks
                    snapshots[cut].append((seg_num[:, lab], (~keep[:cut]).double().sum(0)[lab],
                                           seg_half[:, :, lab], seg_half_counts[:, lab]))  # fmt: skip
            numerator += seg_num[:, lab]
            counts += (~keep).double().sum(0)[lab]
            half_num += seg_half[:, :, lab]
            half_counts += seg_half_counts[:, lab]
    snapshots[per_level] = [(numerator, counts, half_num, half_counts)]
    results = {
        cut: _result(parts, (n_rows, t, f), cut * len(labels), used_batch) for cut, parts in snapshots.items()
    }
    full = results.pop(per_level)
    full.prefixes = {b: results.get(masks_per_level(b, len(labels)), full) for b in prefixes}
    return full


def _result(
    parts: Sequence[tuple[Tensor, ...]], shape: tuple[int, ...], n_masks: int, batch: int
) -> SaliencyResult:
    """A :class:`SaliencyResult` from the summed (numerator, counts, half numerators, half counts)
    of ``parts`` (one per SLIC level, or one in all)."""
    numerator, counts, half_num, half_counts = (sum((p[k] for p in parts[1:]), parts[0][k]) for k in range(4))
    sal = torch.where(counts > 0, numerator / counts.clamp_min(1), torch.zeros_like(numerator))
    halves = _mean_map(half_num, half_counts.unsqueeze(1))
    return SaliencyResult(
        saliency=sal.view(shape).float().cpu().numpy(),
        counts=counts.view(shape[1:]).round().long().cpu().numpy(),
        n_masks=n_masks,
        batch_size=batch,
        halves=halves.view(2, *shape).float().cpu().numpy(),
    )


# --------------------------------------------------------------------------- SM^H
def explain_encoder(
    model: Any,
    features: np.ndarray | Tensor,
    decoder_input: Sequence[int],
    options: OcclusionOptions,
    uid: str = "",
    prefixes: Sequence[int] = (),
) -> SaliencyResult:
    """SM^H of one utterance: occlusion of whole encoder output steps (``p`` = ``p_H``).

    Args: as :func:`explain_input`, without segmentations (``prefixes``: maps of the first ``b``
    masks).

    Returns:
        :class:`SaliencyResult` with saliency (I, T') and counts (T',).
    """
    dims = model.dims
    device, dtype = model_device_dtype(model)
    bf16 = resolve_bf16(options.autocast_bf16, device)  # "auto" decided once, not per batch
    x = _features_tensor(features, dims, device, dtype)
    dec = _decoder_tensor(decoder_input, dims, device)
    n_rows = dec.size(1)
    gen = torch.Generator(device=device).manual_seed(utterance_seed(options.seed, uid))
    _, context = occlusion_context(model, x)
    with eval_mode(model), torch.inference_mode(), context:
        clean, enc = clean_log_probs(model, x, dec, bf16)
        states = enc.states  # (1, T'', D): T'' > T' for a fixed-window model, whose padding is kept
        t_enc = int(enc.lengths[0])  # real encoder steps: only these are occluded and scored
        pad_steps = states.size(1) - t_enc
        with record_function(PHASES["mask"]):
            keep = torch.rand(options.n_masks, t_enc, generator=gen, device=device) >= options.p  # (N, T')
        numerator = torch.zeros(n_rows, t_enc, dtype=torch.float64, device=device)
        half_num = torch.zeros(2, n_rows, t_enc, dtype=torch.float64, device=device)
        half_counts = torch.zeros(2, t_enc, dtype=torch.float64, device=device)
        occluded_decoder = None
        if hasattr(model, "encoder_occlusion") and not pad_steps:  # cross K/V projected once
            with autocast_bf16(device, bf16):
                occluded_decoder = model.encoder_occlusion(states)

        def score(k: Tensor) -> Tensor:
            b = k.size(0)
            if occluded_decoder is not None:
                with autocast_bf16(device, bf16), record_function(PHASES["decoder"]):
                    logits = occluded_decoder(k, dec.expand(b, -1))
            else:
                with record_function(PHASES["mask"]):
                    if pad_steps:
                        k = torch.cat([k, torch.ones(b, pad_steps, dtype=k.dtype, device=device)], dim=1)
                    masked = states * k.unsqueeze(-1).to(states.dtype)
                lengths = torch.full((b,), t_enc, device=device)
                with autocast_bf16(device, bf16), record_function(PHASES["decoder"]):
                    logits = model.decode_teacher_forced(masked, lengths, dec.expand(b, -1)).logits
            with record_function(PHASES["kl"]):
                return kl_rows(clean, torch.log_softmax(logits.float(), dim=-1))

        def probe(b: int) -> None:
            score(torch.ones(b, t_enc, dtype=torch.bool, device=device))

        def step(start: int, stop: int) -> None:
            k = keep[start:stop]
            s = score(k).double()
            with record_function(PHASES["accumulate"]):
                occluded = (~k).double()
                numerator.add_(s.T @ occluded)
                _accumulate_halves(half_num, half_counts, start, s, occluded)

        batch_size = auto_batch_size(device, t_enc, options, probe)
        done = 0
        results = {}
        for cut in _cuts(prefixes, options.n_masks):
            batch_size = _run_batches(cut, batch_size, step, start=done)
            done = cut
            parts = [(numerator, (~keep[:cut]).double().sum(0), half_num, half_counts)]
            results[cut] = _result(parts, (n_rows, t_enc), cut, batch_size)
    full = results.pop(options.n_masks)
    full.prefixes = {b: results.get(b, full) for b in prefixes}
    return full
