"""Training losses (label-smoothed cross-entropy and CTC, as fairseq computes them) and the dev loss.

They are written out here rather than taken from torch's loss functions because the numbers
must be fairseq's, which torch's built-in variants do not give:

* Label-smoothed CE (fairseq's ``label_smoothed_nll_loss``): the smoothing mass ``eps`` is
  spread over the ``V - 1`` classes other than the target,
  ``(1 - eps - eps/(V-1)) * nll + eps/(V-1) * sum_v(-log p_v)``, whereas
  ``F.cross_entropy(label_smoothing=eps)`` spreads ``eps/V`` over all ``V`` classes, the
  target included.  The first target position (the language tag, which the decoder is
  given rather than asked to predict: fairseq's ignore-prefix of 1) and PAD are left out, and the sum is divided by the number of
  remaining target tokens of the whole batch (not averaged per sentence).  The log-softmax
  is taken in float32, also under bf16 autocast.
* CTC: ``F.ctc_loss`` summed over the batch and divided by the total number of CTC target
  tokens, as fairseq's CTC criteria normalise; torch's ``reduction="mean"`` instead divides
  each sample by its own target length and then averages over the samples.  The blank is
  ``<s>`` (:data:`CTC_BLANK_ID` = 0, fairseq's ``dictionary.bos()``), which no target
  contains, and ``zero_infinity`` zeroes the loss of samples whose CTC target needs more frames
  than their encoder output has (counted by :func:`count_unalignable`).
* The dev loss reuses the CE with ``eps = 0`` (plain NLL over the same positions),
  token-weighted over the whole dev set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from caspes.model import S2TModel, S2TOutput
from caspes.model.inference import autocast_bf16
from caspes.tokenizer import BOS_ID, PAD_ID
from caspes.train.config import TrainConfig
from caspes.train.data import Batch, TrainingData, ctc_min_frames

__all__ = ["CTC_BLANK_ID", "compute_losses", "count_unalignable", "evaluate_loss"]

#: CTC blank: the ``<s>`` id, never a decoder input/output token (fairseq uses EOS as BOS).
CTC_BLANK_ID = BOS_ID


# =========================================================================== losses
def _label_smoothed_ce(logits: Tensor, target: Tensor, epsilon: float) -> tuple[Tensor, Tensor, Tensor]:
    """Sum of fairseq's label-smoothed loss, sum of NLL, token count (ignoring prefix 1 and PAD)."""
    lprobs = torch.log_softmax(logits[:, 1:].float(), dim=-1)
    tgt = target[:, 1:]
    mask = tgt.ne(PAD_ID)
    nll = -lprobs.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    if epsilon > 0:
        smooth = -lprobs.sum(dim=-1)
        eps_i = epsilon / (lprobs.size(-1) - 1)
        loss = (1.0 - epsilon - eps_i) * nll + eps_i * smooth
    else:
        loss = nll
    zero = torch.zeros((), dtype=loss.dtype, device=loss.device)
    return torch.where(mask, loss, zero).sum(), torch.where(mask, nll, zero).sum(), mask.sum()


def _ctc(log_probs: Tensor, input_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
    """Per-target-token CTC loss (sum over the batch / target tokens), blank = CTC_BLANK_ID."""
    loss = F.ctc_loss(
        log_probs.transpose(0, 1).float(),
        targets,
        input_lengths,
        target_lengths,
        blank=CTC_BLANK_ID,
        reduction="sum",
        zero_infinity=True,
    )
    return loss / target_lengths.sum().clamp_min(1)


def compute_losses(output: S2TOutput, batch: Batch, config: TrainConfig) -> dict[str, Tensor]:
    """Loss parts of one batch.

    Returns:
        ``{"loss", "ce", "nll", "ctc_src", "ctc_tgt", "tokens"}``: the weighted total, the
        label-smoothed CE and plain NLL per target token (language-tag position and PAD
        ignored), the CTC losses per CTC target token (0 when the head is missing or its
        weight is 0) and the number of CE tokens.
    """
    ce_sum, nll_sum, tokens = _label_smoothed_ce(output.logits, batch.target, config.label_smoothing)
    denom = tokens.clamp_min(1)
    ce, nll = ce_sum / denom, nll_sum / denom
    zero = torch.zeros((), device=ce.device)
    ctc_src = zero
    if output.ctc_src_log_probs is not None and config.ctc_src_weight > 0:
        ctc_src = _ctc(
            output.ctc_src_log_probs, output.encoder_lengths, batch.ctc_src_targets, batch.ctc_src_lengths
        )
    ctc_tgt = zero
    if output.ctc_tgt_log_probs is not None and config.ctc_tgt_weight > 0:
        ctc_tgt = _ctc(
            output.ctc_tgt_log_probs, output.encoder_lengths, batch.ctc_tgt_targets, batch.ctc_tgt_lengths
        )
    loss = config.ce_weight * ce + config.ctc_src_weight * ctc_src + config.ctc_tgt_weight * ctc_tgt
    return {"loss": loss, "ce": ce, "nll": nll, "ctc_src": ctc_src, "ctc_tgt": ctc_tgt, "tokens": tokens}


def count_unalignable(
    batch: Batch, enc_lengths: Tensor, config: TrainConfig, has_src: bool, has_tgt: bool
) -> int:
    """Samples of the batch with at least one CTC target longer than their encoder output."""
    enc = enc_lengths.tolist()
    count = 0
    for k in range(len(batch)):
        bad = False
        if has_src and config.ctc_src_weight > 0:
            ids = batch.ctc_src_targets[k, : int(batch.ctc_src_lengths[k])].tolist()
            bad |= ctc_min_frames(ids) > enc[k]
        if has_tgt and config.ctc_tgt_weight > 0:
            ids = batch.ctc_tgt_targets[k, : int(batch.ctc_tgt_lengths[k])].tolist()
            bad |= ctc_min_frames(ids) > enc[k]
        count += bad
    return count


@torch.no_grad()
def evaluate_loss(
    model: S2TModel,
    data: TrainingData,
    stage: str,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> float:
    """Teacher-forced dev loss: token-weighted mean plain NLL (no label smoothing).

    Eval mode, no SpecAugment, batches in their fixed (unshuffled) order; the language
    tag position and PAD are ignored as in training.  Stage ``asr``: ASR targets; stage
    ``asr_st``: every utterance is scored on its ASR target and (when it has one) its ST
    target.  The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    try:
        for indices in data.batches:
            jobs = [(indices, [False] * len(indices))]
            if stage == "asr_st":
                with_st = [i for i in indices if data.utterances[i].tgt_ids is not None]
                if with_st:
                    jobs.append((with_st, [True] * len(with_st)))
            for idx, flags in jobs:
                batch = data.collate(idx, flags).to(device)
                with autocast_bf16(device, bf16):
                    enc = model.encode(batch.features, batch.lengths)
                    logits = model.decode_teacher_forced(enc.states, enc.lengths, batch.decoder_input).logits
                _, nll_sum, n = _label_smoothed_ce(logits, batch.target, 0.0)
                total += float(nll_sum)
                tokens += int(n)
    finally:
        model.train(was_training)
    return total / max(tokens, 1)
