"""Autoregressive decoding of an :class:`~caspes.model.S2TModel` (greedy; beam search to come).

Conventions (fairseq's, as in training — :func:`caspes.train.build_target`):

* the decoder input starts with EOS used as BOS (``model.dims.eos_id``), followed by the
  *forced prefix* of the utterance (normally its ``<lang:xx>`` tag), then the generated tokens;
* the *target* of an utterance is ``prefix + generated`` (+ EOS when the model emits it);
* the maximum target length (prefix included, EOS excluded) is fairseq's
  ``max_len = min(int(max_len_a * T' + max_len_b), max_target_positions - 1)``; here ``T'`` is the
  utterance's own encoder length (fairseq multiplies ``a`` by the padded input length of the
  batch, which makes results depend on batching; with the default ``a = 0`` both agree).
  A row that reaches ``max_len`` stops as if EOS had been forced (fairseq does exactly that);
* like fairseq's ``SequenceGenerator``, PAD is never chosen, and EOS is not allowed as the very
  first target token (``min_len = 1``; irrelevant when a prefix is forced);
* rows are decoded in batches with the key/value cache (:meth:`S2TModel.decode_step`); a row that
  has finished is removed from the batch (its cache rows are dropped), so it cannot change.

Beam search (:func:`caspes.beam.beam_search`) has the same inputs/outputs as
:func:`greedy_decode`; :func:`decode_batch` dispatches on ``options.beam_size``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .io import DataError
from .tokenizer import BOS_ID

__all__ = [
    "DecodingOptions",
    "max_target_length",
    "greedy_decode",
    "decode_batch",
    "decode_in_chunks",
    "make_decode_batches",
    "decode_manifest",
    "evaluate_greedy",
    "decode_split",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingOptions:
    """Decoding settings.

    Attributes:
        max_len_a / max_len_b: maximum target length ``a * T' + b`` (``T'`` encoder frames of the
            utterance), capped at ``max_target_positions - 1``; counts the forced prefix, not EOS.
        batch_size: at most this many utterances per decoder batch (None: no limit; the
            frame budget of :func:`decode_manifest` still applies).
        beam_size: 1 = greedy search, > 1 = beam search (:mod:`caspes.beam`).
        force_lang_tag: :func:`decode_manifest` forces the target-language tag as the first
            target token (as in training); False lets the model choose it.
        no_repeat_ngram_size: beam search never repeats an n-gram of this size (0: off; the
            study uses 5). Greedy search does not apply it.
    """

    max_len_a: float = 0.0
    max_len_b: int = 200
    batch_size: int | None = None
    beam_size: int = 1
    force_lang_tag: bool = True
    no_repeat_ngram_size: int = 5

    def __post_init__(self) -> None:
        if self.max_len_a < 0:
            raise ValueError(f"max_len_a must be >= 0, got {self.max_len_a}")
        if not isinstance(self.max_len_b, int) or self.max_len_b < 1:
            raise ValueError(f"max_len_b must be a positive int, got {self.max_len_b!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}")


def max_target_length(encoder_length: int, options: DecodingOptions, max_target_positions: int) -> int:
    """Maximum target tokens (forced prefix included, EOS excluded) for ``T' = encoder_length``."""
    return min(int(options.max_len_a * encoder_length + options.max_len_b), max_target_positions - 1)


# --------------------------------------------------------------------------- helpers
def _model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module):
    """Eval mode for the block; the previous training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _as_batch(
    features: Sequence[np.ndarray] | Tensor,
    lengths: Sequence[int] | Tensor | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """List of (T_i, F) arrays, or a padded (B, T, F) tensor (+ lengths), -> padded tensor, lengths."""
    if isinstance(features, Tensor):
        if features.dim() != 3:
            raise ValueError(f"features must be (B, T, F), got {tuple(features.shape)}")
        if lengths is None:
            lens = torch.full((features.size(0),), features.size(1), dtype=torch.long)
        else:
            lens = torch.as_tensor(lengths, dtype=torch.long)
        return features.to(device=device, dtype=dtype), lens.to(device)
    if lengths is not None:
        raise ValueError("lengths are taken from the arrays when features is a list")
    arrays = [np.asarray(f) for f in features]
    if any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) > 1:
        raise ValueError(f"features must be (T, F) arrays of one F, got {[a.shape for a in arrays]}")
    lens = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    batch = torch.zeros(len(arrays), int(lens.max()), arrays[0].shape[1], dtype=dtype)
    for i, a in enumerate(arrays):
        batch[i, : a.shape[0]] = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    return batch.to(device), lens.to(device)


def _check_prefix(prefix: Sequence[Sequence[int]], n: int, vocab: int, pad: int, eos: int) -> list[list[int]]:
    if len(prefix) != n:
        raise ValueError(f"prefix must have one entry per utterance ({n}), got {len(prefix)}")
    out = [[int(t) for t in p] for p in prefix]
    for p in out:
        for t in p:
            if not 0 <= t < vocab or t in (pad, eos):
                raise ValueError(f"forced prefix token {t} is PAD, EOS or outside [0, {vocab})")
    return out


# --------------------------------------------------------------------------- greedy search
def _greedy_chunk(
    model: Any,
    features: Tensor,
    lengths: Tensor,
    prefix: list[list[int]],
    options: DecodingOptions,
) -> list[list[int]]:
    dims = model.dims
    eos, pad = dims.eos_id, dims.pad_id
    device = features.device
    enc = model.encode(features, lengths)
    enc_lengths = enc.lengths.tolist()
    n = len(prefix)
    max_lens = [max_target_length(int(t), options, dims.max_target_positions) for t in enc_lengths]
    results: list[list[int]] = [[] for _ in range(n)]

    # Rows whose budget is used up by the forced prefix produce nothing.
    active = [i for i in range(n) if max_lens[i] > len(prefix[i])]
    if not active:
        return results
    sel = torch.tensor(active, dtype=torch.long, device=device)
    states = enc.states.index_select(0, sel)
    mask = enc.padding_mask.index_select(0, sel)
    # The prefix part common to all active rows goes in with the first step.
    common = min(len(prefix[i]) for i in active)
    tokens = torch.tensor([[eos, *prefix[i][:common]] for i in active], dtype=torch.long, device=device)
    width = max(len(prefix[i]) for i in active)
    forced = torch.full((len(active), max(width, 1)), -1, dtype=torch.long, device=device)
    for k, i in enumerate(active):
        if prefix[i]:
            forced[k, : len(prefix[i])] = torch.tensor(prefix[i], dtype=torch.long)
    row_max = torch.tensor([max_lens[i] for i in active], dtype=torch.long, device=device)
    rows = torch.tensor(active, dtype=torch.long, device=device)  # original index of each active row
    cache = None
    while True:
        logits, cache, _ = model.decode_step(states, mask, tokens, cache)
        logits = logits.float()
        logits[:, pad] = -torch.inf
        logits[:, BOS_ID] = -torch.inf  # <s> is never a target (it is the CTC blank)
        pos = tokens.size(1) - 1  # index (in the target) of the token chosen now
        if pos == 0:
            logits[:, eos] = -torch.inf
        choice = logits.argmax(dim=-1)
        if pos < forced.size(1):
            is_forced = forced[:, pos] >= 0
            choice = torch.where(is_forced, forced[:, pos], choice)
        else:
            is_forced = torch.zeros_like(choice, dtype=torch.bool)
        tokens = torch.cat([tokens, choice.unsqueeze(1)], dim=1)
        ended_eos = choice.eq(eos) & ~is_forced
        ended = ended_eos | row_max.le(pos + 1)
        if bool(ended.any()):
            for k in ended.nonzero(as_tuple=True)[0].tolist():
                i = int(rows[k])
                stop = tokens.size(1) - 1 if bool(ended_eos[k]) else tokens.size(1)
                results[i] = tokens[k, 1 + len(prefix[i]) : stop].tolist()
            keep = (~ended).nonzero(as_tuple=True)[0]
            if keep.numel() == 0:
                break
            tokens, states, mask = tokens[keep], states[keep], mask[keep]
            forced, row_max, rows = forced[keep], row_max[keep], rows[keep]
            cache = cache.reorder(keep)
    return results



def decode_in_chunks(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions,
    lengths: Sequence[int] | Tensor | None,
    decode_chunk: Any,
    *extra: Any,
) -> list:
    """Shared driver of the searches: checks the inputs, then calls
    ``decode_chunk(model, features (b, t, F), lengths (b,), prefixes, options, *extra)`` on chunks of
    ``options.batch_size`` utterances (all at once when None), in eval and inference mode, and
    concatenates the per-utterance results."""
    if len(features) == 0:
        return []
    device, dtype = _model_device_dtype(model)
    feats, lens = _as_batch(features, lengths, device, dtype)
    n = feats.size(0)
    dims = model.dims
    if feats.size(-1) != dims.n_mels:
        raise ValueError(f"features have {feats.size(-1)} bins, the model expects {dims.n_mels}")
    prefixes = _check_prefix(prefix, n, dims.vocab_size, dims.pad_id, dims.eos_id)
    step = options.batch_size or n
    out: list = []
    with _eval_mode(model), torch.inference_mode():
        for start in range(0, n, step):
            chunk_lens = lens[start : start + step]
            t = int(chunk_lens.max())
            out.extend(
                decode_chunk(
                    model, feats[start : start + step, :t], chunk_lens, prefixes[start : start + step], options, *extra
                )
            )
    return out

def greedy_decode(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions = DecodingOptions(),
    lengths: Sequence[int] | Tensor | None = None,
) -> list[list[int]]:
    """Greedy search.

    Args:
        model: an :class:`~caspes.model.S2TModel` (set to eval mode for the call, on its own
            device and dtype; inputs are moved there).
        features: list of (T_i, n_mels) arrays, or a padded (B, T, n_mels) tensor with ``lengths``
            (default: all ``T``).
        prefix: per utterance, the tokens forced after the EOS-as-BOS start, e.g. ``[[lang_id]]``
            (may be empty or differ in length between utterances; no PAD/EOS).
        options: :class:`DecodingOptions` (max length, batch size).
        lengths: (B,) valid frames when ``features`` is a tensor.

    Returns:
        Per utterance the generated ids after the forced prefix, without the final EOS.
    """
    return decode_in_chunks(model, features, prefix, options, lengths, _greedy_chunk)


def decode_batch(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions = DecodingOptions(),
    lengths: Sequence[int] | Tensor | None = None,
) -> list[list[int]]:
    """Decode with the search ``options`` asks for: greedy for ``beam_size == 1``, else
    :func:`caspes.beam.beam_search` (no-repeat-ngram size 5, as the study decodes)."""
    if options.beam_size == 1:
        return greedy_decode(model, features, prefix, options, lengths)
    from .beam import beam_search  # beam imports this module

    return beam_search(model, features, prefix, options, lengths, options.no_repeat_ngram_size)


# --------------------------------------------------------------------------- manifests
def make_decode_batches(
    n_frames: Sequence[int], batch_frames: int, batch_size: int | None = None
) -> list[list[int]]:
    """Indices grouped longest first so that ``len(batch) * longest <= batch_frames`` (a longer
    single utterance gets a batch of its own) and ``len(batch) <= batch_size``."""
    if batch_frames < 1:
        raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
    order = sorted(range(len(n_frames)), key=lambda i: (-int(n_frames[i]), i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = int(n_frames[current[0]]) if current else int(n_frames[i])
        full = batch_size is not None and len(current) >= batch_size
        if current and (full or (len(current) + 1) * longest > batch_frames):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def decode_manifest(
    model: Any,
    tokenizer: Any,
    reader: Any,
    task: str,
    options: DecodingOptions = DecodingOptions(),
    batch_frames: int = 20000,
    progress: bool = False,
) -> list[dict[str, str]]:
    """Decode every utterance of a feature manifest.

    Args:
        model: :class:`~caspes.model.S2TModel`.
        tokenizer: the model's :class:`~caspes.tokenizer.Tokenizer`.
        reader: :class:`~caspes.features.FeatureReader` (CMVN-normalised features).
        task: ``"asr"`` (target language ``src_lang``, reference ``src_text``) or ``"st"``
            (``tgt_lang``, ``tgt_text``).
        options: :class:`DecodingOptions`.
        batch_frames: bound on ``utterances * longest input frames`` per batch (batches are
            formed longest first; output keeps manifest order).
        progress: show a progress bar.

    Returns:
        One dict per manifest row, in manifest order: ``id``, ``src_lang``, ``tgt_lang``, ``task``,
        ``reference``, ``hypothesis`` (detokenised, language tag and specials dropped) and
        ``pieces``: the space-separated SentencePiece pieces of the target exactly as generated,
        *including* the leading language tag (forced, or chosen by the model when
        ``force_lang_tag`` is False) and without EOS, i.e. the ``target`` minus EOS of a
        teacher-forced pass whose decoder input is ``[EOS] + [piece_to_id(p) for p in pieces]``.
        The pieces are the generated ids, not a re-tokenisation of ``hypothesis``.
    """
    from tqdm import tqdm

    if task not in ("asr", "st"):
        raise ValueError(f"task must be 'asr' or 'st', got {task!r}")
    lang_col, text_col = ("src_lang", "src_text") if task == "asr" else ("tgt_lang", "tgt_text")
    rows = list(reader.rows)
    prefixes: list[list[int]] = []
    n_frames: list[int] = []
    for row in rows:
        where = f"{reader.path}:{row.get('_line', '?')}"
        if lang_col not in row or text_col not in row:
            raise DataError(f"{where}: decoding task {task} needs columns {lang_col} and {text_col}")
        lang = row[lang_col]
        if lang not in tokenizer.langs:
            raise DataError(f"{where}: tokenizer {tokenizer.path} has no tag for language '{lang}'")
        prefixes.append([tokenizer.lang_id(lang)] if options.force_lang_tag else [])
        try:
            n_frames.append(int(row["n_frames"]))
        except (KeyError, ValueError):
            raise DataError(f"{where}: n_frames missing or not an integer") from None

    hyps: list[list[int] | None] = [None] * len(rows)
    batches = make_decode_batches(n_frames, batch_frames, options.batch_size)
    for batch in tqdm(batches, desc=f"decode {task}", disable=not progress, mininterval=5):
        feats = [reader[rows[i]["id"]] for i in batch]
        out = decode_batch(model, feats, [prefixes[i] for i in batch], options)
        for i, ids in zip(batch, out):
            hyps[i] = prefixes[i] + ids

    results: list[dict[str, str]] = []
    for row, target in zip(rows, hyps):
        assert target is not None
        results.append(
            {
                "id": row["id"],
                "src_lang": row.get("src_lang", ""),
                "tgt_lang": row.get("tgt_lang", ""),
                "task": task,
                "reference": row[text_col],
                "hypothesis": tokenizer.decode(target),
                "pieces": " ".join(tokenizer.sp.id_to_piece(int(t)) for t in target),
            }
        )
    return results


def evaluate_greedy(
    checkpoint_path: str | Path,
    tokenizer_path: str | Path,
    manifests: dict[str, str | Path],
    tasks: Sequence[str],
    batch_frames: int = 20000,
    progress: bool = True,
) -> tuple[list[dict], list[dict]]:
    """Greedy-decode each language's manifest for each task with a trained checkpoint.

    Returns (quality rows, hypothesis rows): one quality row per (language, task) with WER
    (ASR) or BLEU/chrF (ST), as :func:`caspes.metrics.quality_row` builds it, plus the
    utterance count and decoding seconds per utterance; and every decoded utterance.
    """
    import time

    from .features import FeatureReader
    from .metrics import quality_row
    from .tokenizer import Tokenizer
    from .train import load_model

    model, _ = load_model(checkpoint_path)
    tokenizer = Tokenizer(tokenizer_path)
    quality: list[dict] = []
    hyps: list[dict] = []
    for lang, manifest in manifests.items():
        reader = FeatureReader(manifest)
        for task in tasks:
            start = time.perf_counter()
            rows = decode_manifest(model, tokenizer, reader, task, batch_frames=batch_frames, progress=progress)
            seconds = time.perf_counter() - start
            tgt = rows[0]["tgt_lang"] if task == "st" and rows else lang
            row = quality_row(task, f"{lang}-{tgt}", [r["hypothesis"] for r in rows], [r["reference"] for r in rows], tgt)
            row["seconds_per_utterance"] = round(seconds / max(len(rows), 1), 4)
            quality.append(row)
            hyps.extend(rows)
            log.info("%s %s: %s", f"{lang}-{tgt}", task, row)
    return quality, hyps


def decode_split(
    checkpoint_path: str | Path,
    tokenizer_path: str | Path,
    manifest: str | Path,
    task: str,
    options: DecodingOptions,
    hyps_path: str | Path,
    xattn_path: str | Path,
    batch_frames: int = 20000,
    progress: bool = True,
    comet_checkpoint: str | Path | None = None,
    device: str = "cpu",
) -> dict:
    """Decode one split, store its hypotheses and their cross-attention, and score them.

    ``device``: where the model runs (``"auto"``: CUDA when available).
    For ST, COMET is added when ``comet_checkpoint`` names a local checkpoint
    (:func:`caspes.metrics.comet`); otherwise the log says it was not computed.

    Writes ``hyps_path`` (TSV: id, languages, task, reference, hypothesis, pieces — the pieces
    are exactly what the saliency stage teacher-forces) and ``xattn_path`` (every decoder
    layer and head for the re-scored final hypothesis, :mod:`caspes.xattn`). Returns the quality
    row (:func:`caspes.metrics.quality_row`) with the decoding seconds per utterance.
    """
    import time

    import pandas as pd

    from .features import FeatureReader
    from .metrics import quality_row
    from .tokenizer import Tokenizer
    from .train import load_model, resolve_device
    from .xattn import write_cross_attention_store

    model, _ = load_model(checkpoint_path, resolve_device(device))
    tokenizer = Tokenizer(tokenizer_path)
    reader = FeatureReader(manifest)
    start = time.perf_counter()
    rows = decode_manifest(model, tokenizer, reader, task, options, batch_frames=batch_frames, progress=progress)
    seconds = time.perf_counter() - start
    pd.DataFrame(rows, columns=["id", "src_lang", "tgt_lang", "task", "reference", "hypothesis", "pieces"]).to_csv(
        hyps_path, sep="\t", index=False
    )
    write_cross_attention_store(xattn_path, model, tokenizer, reader, rows)
    src = reader.rows[0]["src_lang"] if reader.rows else ""
    tgt = src if task == "asr" else (reader.rows[0]["tgt_lang"] if reader.rows else "")
    quality = quality_row(
        task, f"{src}-{tgt}", [r["hypothesis"] for r in rows], [r["reference"] for r in rows], tgt
    )
    quality["seconds_per_utterance"] = round(seconds / max(len(rows), 1), 4)
    if task == "st":
        if comet_checkpoint:
            from .metrics import comet

            by_id = {r["id"]: r for r in reader.rows}
            quality["comet"] = comet(
                [by_id[r["id"]]["src_text"] for r in rows],
                [r["hypothesis"] for r in rows],
                [r["reference"] for r in rows],
                comet_checkpoint,
            )
        else:
            log.info("COMET not computed: decoding.comet_checkpoint names no local checkpoint")
    log.info("%s %s-%s: %s", Path(manifest).name, src, tgt, quality)
    return quality
