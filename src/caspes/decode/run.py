"""Decoding a manifest: batches, greedy or beam search, hypotheses, quality, cross-attention store."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from tqdm import tqdm

from caspes.core.batching import pack_by_frames
from caspes.core.manifest import DataError
from caspes.core.tsv import write_tsv
from caspes.decode.beam import beam_search
from caspes.decode.greedy import greedy_decode
from caspes.decode.metrics import comet, quality_row
from caspes.decode.options import DecodingOptions, split_decoding_settings
from caspes.decode.xattn import write_cross_attention_store
from caspes.features import FeatureReader
from caspes.hf.loading import load_for_inference, load_tokenizer_for
from caspes.model.checkpoint import load_model
from caspes.model.inference import resolve_device
from caspes.tokenizer import Tokenizer

__all__ = [
    "decode_batch",
    "make_decode_batches",
    "decode_and_score",
    "decode_manifest",
    "evaluate_greedy",
    "decode_split",
    "decode_split_to_files",
    "evaluate_greedy_to_files",
]

log = logging.getLogger(__name__)


def decode_batch(
    model: Any,
    features: Sequence[np.ndarray] | Tensor,
    prefix: Sequence[Sequence[int]],
    options: DecodingOptions = DecodingOptions(),
    lengths: Sequence[int] | Tensor | None = None,
) -> list[list[int]]:
    """Decode with the search ``options`` asks for: greedy for ``beam_size == 1``, else
    :func:`caspes.decode.beam.beam_search` (no-repeat-ngram size 5, as the study decodes)."""
    if options.beam_size == 1:
        return greedy_decode(model, features, prefix, options, lengths)

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
    return pack_by_frames(order, n_frames, batch_frames, batch_size)


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
        prefixes.append(
            tokenizer.decoding_prefix(task, row.get("src_lang", ""), lang, options.force_lang_tag)
        )
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
                "pieces": " ".join(tokenizer.id_to_piece(int(t)) for t in target),
            }
        )
    return results


def decode_and_score(
    model: Any,
    tokenizer: Any,
    reader: Any,
    task: str,
    src: str,
    options: DecodingOptions = DecodingOptions(),
    batch_frames: int = 20000,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """:func:`decode_manifest` timed, and its quality: (hypothesis rows, quality row with the
    decoding seconds per utterance). ``src``: the source language; ST scores against the
    manifest's ``tgt_lang``."""
    start = time.perf_counter()
    rows = decode_manifest(
        model, tokenizer, reader, task, options, batch_frames=batch_frames, progress=progress
    )
    seconds = time.perf_counter() - start
    tgt = reader.rows[0]["tgt_lang"] if task == "st" and reader.rows else src
    quality = quality_row(
        task, f"{src}-{tgt}", [r["hypothesis"] for r in rows], [r["reference"] for r in rows], tgt
    )
    quality["seconds_per_utterance"] = round(seconds / max(len(rows), 1), 4)
    return rows, quality


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
    (ASR) or BLEU/chrF (ST), as :func:`caspes.decode.metrics.quality_row` builds it, plus the
    utterance count and decoding seconds per utterance; and every decoded utterance.
    """

    model, _ = load_model(checkpoint_path)
    tokenizer = Tokenizer(tokenizer_path)
    quality: list[dict] = []
    hyps: list[dict] = []
    for lang, manifest in manifests.items():
        reader = FeatureReader(manifest)
        for task in tasks:
            rows, row = decode_and_score(
                model, tokenizer, reader, task, lang, batch_frames=batch_frames, progress=progress
            )
            quality.append(row)
            hyps.extend(rows)
            log.info("%s %s: %s", row["lang_pair"], task, row)
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
    (:func:`caspes.decode.metrics.comet`); otherwise the log says it was not computed.

    Writes ``hyps_path`` (TSV: id, languages, task, reference, hypothesis, pieces — the pieces
    are exactly what the saliency stage teacher-forces) and ``xattn_path`` (every decoder
    layer and head for the re-scored final hypothesis, :mod:`caspes.decode.xattn`). Returns the quality
    row (:func:`caspes.decode.metrics.quality_row`) with the decoding seconds per utterance.
    """

    model, own_tokenizer = load_for_inference(checkpoint_path, resolve_device(device))
    tokenizer = load_tokenizer_for(tokenizer_path, own_tokenizer)
    reader = FeatureReader(manifest)
    src = reader.rows[0]["src_lang"] if reader.rows else ""
    rows, quality = decode_and_score(
        model, tokenizer, reader, task, src, options, batch_frames=batch_frames, progress=progress
    )
    write_tsv(
        hyps_path, rows, columns=["id", "src_lang", "tgt_lang", "task", "reference", "hypothesis", "pieces"]
    )
    write_cross_attention_store(xattn_path, model, tokenizer, reader, rows)
    if task == "st":
        if comet_checkpoint:
            by_id = {r["id"]: r for r in reader.rows}
            quality["comet"] = comet(
                [by_id[r["id"]]["src_text"] for r in rows],
                [r["hypothesis"] for r in rows],
                [r["reference"] for r in rows],
                comet_checkpoint,
            )
        else:
            log.info("COMET not computed: decoding.comet_checkpoint names no local checkpoint")
    log.info("%s %s: %s", Path(manifest).name, quality["lang_pair"], quality)
    return quality


def decode_split_to_files(
    checkpoint_path: str | Path,
    tokenizer_path: str | Path,
    manifest: str | Path,
    task: str,
    settings: Mapping[str, Any],
    hyps_path: str | Path,
    xattn_path: str | Path,
    quality_path: str | Path,
    labels: Mapping[str, str],
) -> dict:
    """:func:`decode_split` with the config's ``decoding`` settings; also writes the one-row quality
    TSV (``labels`` first, e.g. model and split). Returns the quality row."""
    options, extra = split_decoding_settings(settings)
    quality = decode_split(
        checkpoint_path, tokenizer_path, manifest, task, options, hyps_path, xattn_path,
        batch_frames=extra["batch_frames"], comet_checkpoint=extra["comet_checkpoint"], device=extra["device"],
    )  # fmt: skip
    row = {**labels, **quality}
    write_tsv(quality_path, [row])
    return row


def evaluate_greedy_to_files(
    checkpoint_path: str | Path,
    tokenizer_path: str | Path,
    manifests: Mapping[str, str | Path],
    tasks: Sequence[str],
    quality_path: str | Path,
    hyps_path: str | Path,
) -> None:
    """:func:`evaluate_greedy`, written as two TSVs (quality per language and task; hypotheses)."""
    quality, hyps = evaluate_greedy(checkpoint_path, tokenizer_path, dict(manifests), tasks)
    table = write_tsv(quality_path, quality)
    write_tsv(hyps_path, hyps)
    log.info("greedy dev quality:\n%s", table.to_string(index=False))
