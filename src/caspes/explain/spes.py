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
  per mask.
* Score of mask ``m`` on row ``i``: ``s_m[i] = KL(P[i] || Q_m[i])`` over the full vocabulary, fp32.
* Accumulation on the *occluded* elements: ``SM[i, e] = sum_m s_m[i] D_m[e] / sum_m D_m[e]`` with
  ``D_m = 1 - M_m`` (0 where an element was never occluded).  With SLIC masks ``D_m`` is constant
  on each segment, so the numerator is computed per level as ``S^T @ D_seg`` (I x segments) and
  scattered to the cells through the label map: exact, and never an N x I x T x F tensor.

Speed: masks are drawn on the model's device, many per forward pass; the batch size adapts to the
device (free GPU memory, or a frame budget on CPU); bf16 autocast for the model is an option on
GPU (the KL stays fp32; the clean pass uses the same precision as the perturbed ones).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caspes.explain.options import OcclusionOptions
from caspes.model.inference import autocast_bf16, check_decoder_input, eval_mode, model_device_dtype

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
]

log = logging.getLogger(__name__)


@dataclass
class SaliencyResult:
    """Raw (un-normalised) saliency of one utterance.

    Attributes:
        saliency: float32 (I, T, F) for SM^X or (I, T') for SM^H: mean KL over the masks that
            occluded each element (0 where never occluded).
        counts: int64 (T, F) or (T',): how many masks occluded each element.
        n_masks: masks actually used.
        batch_size: masks per forward pass that was used.
    """

    saliency: np.ndarray
    counts: np.ndarray
    n_masks: int
    batch_size: int


# --------------------------------------------------------------------------- small pieces
def utterance_seed(seed: int, uid: str) -> int:
    """A 63-bit seed from the configured seed and the utterance id (stable across runs/machines)."""
    digest = hashlib.sha256(f"{int(seed)}:{uid}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


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
    model: Any, features: Tensor, decoder: Tensor, autocast: bool = False
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


def _run_batches(total: int, batch_size: int, step: Any) -> int:
    """Call ``step(start, stop)`` over ``range(total)`` in batches; on CUDA out-of-memory halve the
    batch and retry.  Returns the batch size finally used."""
    start = 0
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
) -> SaliencyResult:
    """SM^X of one utterance.

    Args:
        model: :class:`~caspes.model.S2TModel` (any device; eval and inference mode for the call).
        features: (T, F) utterance-CMVN filterbanks, as decoded.
        decoder_input: ``[EOS, <lang>, y_1 .. y_n]`` of the model's own hypothesis.
        segmentations: per level an integer (T, F) array of 0-based segment labels.
        options: :class:`OcclusionOptions` (``p`` = segment occlusion probability).
        uid: utterance id (part of the mask seed).

    Returns:
        :class:`SaliencyResult` with saliency (I, T, F) and counts (T, F).
    """
    dims = model.dims
    device, dtype = model_device_dtype(model)
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
    dec = _decoder_tensor(decoder_input, dims, device)
    n_rows = dec.size(1)
    gen = torch.Generator(device=device).manual_seed(utterance_seed(options.seed, uid))
    numerator = torch.zeros(n_rows, t * f, dtype=torch.float64, device=device)
    counts = torch.zeros(t * f, dtype=torch.float64, device=device)
    flat_x = x.reshape(-1)
    used_batch = 0
    fill, context = occlusion_context(model, x)
    flat_fill = None if fill is None else fill.expand(t, f).reshape(-1)
    with eval_mode(model), torch.inference_mode(), context:
        clean, _ = clean_log_probs(model, x, dec, options.autocast_bf16)

        def score(keep_cells: Tensor) -> Tensor:  # (b, T*F) bool -> (b, I) KL
            b = keep_cells.size(0)
            if flat_fill is None:
                batch = (flat_x * keep_cells.to(dtype)).view(b, t, f)
            else:
                batch = torch.where(keep_cells, flat_x, flat_fill).view(b, t, f)
            lengths = torch.full((b,), t, device=device)
            with autocast_bf16(device, options.autocast_bf16):
                enc = model.encode(batch, lengths)
                logits = model.decode_teacher_forced(enc.states, enc.lengths, dec.expand(b, -1)).logits
            return kl_rows(clean, torch.log_softmax(logits.float(), dim=-1))

        def probe(b: int) -> None:
            score(torch.ones(b, t * f, dtype=torch.bool, device=device))

        batch_size = auto_batch_size(device, t, options, probe)
        for lab in labels:
            n_seg = int(lab.max()) + 1
            keep = torch.rand(per_level, n_seg, generator=gen, device=device) >= options.p  # (N_l, S)
            seg_num = torch.zeros(n_rows, n_seg, dtype=torch.float64, device=device)

            def step(start: int, stop: int, keep=keep, seg_num=seg_num, lab=lab) -> None:
                k = keep[start:stop]
                s = score(k[:, lab])  # (b, I)
                seg_num.add_(s.double().T @ (~k).double())  # (I, S)

            batch_size = used_batch = _run_batches(per_level, batch_size, step)
            numerator += seg_num[:, lab]
            counts += (~keep).double().sum(0)[lab]
    sal = torch.where(counts > 0, numerator / counts.clamp_min(1), torch.zeros_like(numerator))
    return SaliencyResult(
        saliency=sal.view(n_rows, t, f).float().cpu().numpy(),
        counts=counts.view(t, f).round().long().cpu().numpy(),
        n_masks=per_level * len(labels),
        batch_size=used_batch,
    )


# --------------------------------------------------------------------------- SM^H
def explain_encoder(
    model: Any,
    features: np.ndarray | Tensor,
    decoder_input: Sequence[int],
    options: OcclusionOptions,
    uid: str = "",
) -> SaliencyResult:
    """SM^H of one utterance: occlusion of whole encoder output steps (``p`` = ``p_H``).

    Args: as :func:`explain_input`, without segmentations.

    Returns:
        :class:`SaliencyResult` with saliency (I, T') and counts (T',).
    """
    dims = model.dims
    device, dtype = model_device_dtype(model)
    x = _features_tensor(features, dims, device, dtype)
    dec = _decoder_tensor(decoder_input, dims, device)
    n_rows = dec.size(1)
    gen = torch.Generator(device=device).manual_seed(utterance_seed(options.seed, uid))
    _, context = occlusion_context(model, x)
    with eval_mode(model), torch.inference_mode(), context:
        clean, enc = clean_log_probs(model, x, dec, options.autocast_bf16)
        states = enc.states  # (1, T'', D): T'' > T' for a fixed-window model, whose padding is kept
        t_enc = int(enc.lengths[0])  # real encoder steps: only these are occluded and scored
        pad_steps = states.size(1) - t_enc
        keep = torch.rand(options.n_masks, t_enc, generator=gen, device=device) >= options.p  # (N, T')
        numerator = torch.zeros(n_rows, t_enc, dtype=torch.float64, device=device)

        def score(k: Tensor) -> Tensor:
            b = k.size(0)
            if pad_steps:
                k = torch.cat([k, torch.ones(b, pad_steps, dtype=k.dtype, device=device)], dim=1)
            masked = states * k.unsqueeze(-1).to(states.dtype)
            lengths = torch.full((b,), t_enc, device=device)
            with autocast_bf16(device, options.autocast_bf16):
                logits = model.decode_teacher_forced(masked, lengths, dec.expand(b, -1)).logits
            return kl_rows(clean, torch.log_softmax(logits.float(), dim=-1))

        def probe(b: int) -> None:
            score(torch.ones(b, t_enc, dtype=torch.bool, device=device))

        def step(start: int, stop: int) -> None:
            k = keep[start:stop]
            numerator.add_(score(k).double().T @ (~k).double())

        batch_size = auto_batch_size(device, t_enc, options, probe)
        used_batch = _run_batches(options.n_masks, batch_size, step)
        counts = (~keep).double().sum(0)
    sal = torch.where(counts > 0, numerator / counts.clamp_min(1), torch.zeros_like(numerator))
    return SaliencyResult(
        saliency=sal.float().cpu().numpy(),
        counts=counts.round().long().cpu().numpy(),
        n_masks=options.n_masks,
        batch_size=used_batch,
    )
