"""Quality metrics: WER for ASR, BLEU and chrF for ST, and fairseq's raw WER for deletion curves.

* :func:`wer` — corpus WER in percent with ``jiwer`` after Whisper's text normalisation
  (``EnglishTextNormalizer`` for English, ``BasicTextNormalizer`` for any other language), so
  case, punctuation and (for English) spelling variants / number formats do not count as errors.
  Pairs whose *normalised reference* is empty are skipped, because WER is undefined for them
  (a reference of only punctuation, e.g. ``"!"``, normalises to nothing); how many were skipped is
  reported in :class:`WerResult` (:func:`wer_details`) and logged as a warning by :func:`wer`.
* :func:`bleu` / :func:`chrf` — ``sacrebleu`` corpus scores with default settings (BLEU: 13a
  tokenizer, cased, exponential smoothing; chrF: character 6-grams, beta 2, no word n-grams).
* :func:`wer_max` — the scorer fairseq uses for the deletion metrics (``fairseq.scoring.wer`` with
  the ``none`` tokenizer): ``100 * sum(edit distance) / sum(reference words)`` over whitespace
  tokens, *no* lowercasing or punctuation removal, then clipped at 100 (a hallucinating model
  cannot score worse than deleting everything).
* :func:`quality_row` — one table row (``n`` plus ``wer`` for ASR, ``bleu`` and ``chrf`` for ST).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jiwer
import sacrebleu
from rapidfuzz.distance import Levenshtein
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

from caspes.core.manifest import DataError

__all__ = [
    "normalizer_for",
    "WerResult",
    "wer_details",
    "wer",
    "bleu",
    "chrf",
    "wer_max",
    "quality_row",
    "comet",
]

log = logging.getLogger(__name__)


def _check_pairs(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if isinstance(hyps, str) or isinstance(refs, str):
        raise TypeError("hyps and refs must be sequences of strings, not single strings")
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")


@cache
def normalizer_for(lang: str) -> Callable[[str], str]:
    """Whisper's text normaliser for ``lang``: the English one for ``"en"``, the basic one otherwise.

    The basic normaliser lowercases, removes bracketed spans, replaces symbols and punctuation by
    spaces and collapses whitespace (diacritics are kept); the English one additionally
    standardises spellings, contractions and numbers.
    """
    if lang == "en":
        return EnglishTextNormalizer()

    return BasicTextNormalizer()


@dataclass(frozen=True)
class WerResult:
    """Corpus WER with its error counts.

    Attributes:
        wer: ``100 * (S + D + I) / (S + D + H)`` over the scored pairs (0.0 if none was scored).
        n: pairs scored.
        n_empty_ref: pairs skipped because their normalised reference is empty.
        substitutions / deletions / insertions / ref_words: totals over the scored pairs.
    """

    wer: float
    n: int
    n_empty_ref: int
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int


def wer_details(hyps: Sequence[str], refs: Sequence[str], lang: str) -> WerResult:
    """Corpus WER after Whisper normalisation, skipping (and counting) empty normalised references."""

    _check_pairs(hyps, refs)
    norm = normalizer_for(lang)
    kept_h: list[str] = []
    kept_r: list[str] = []
    skipped = 0
    for h, r in zip(hyps, refs):
        r_norm = " ".join(norm(r).split())
        if not r_norm:
            skipped += 1
            continue
        kept_r.append(r_norm)
        kept_h.append(" ".join(norm(h).split()))
    if not kept_r:
        return WerResult(0.0, 0, skipped, 0, 0, 0, 0)
    out = jiwer.process_words(kept_r, kept_h)
    ref_words = out.substitutions + out.deletions + out.hits
    errors = out.substitutions + out.deletions + out.insertions
    return WerResult(
        wer=100.0 * errors / ref_words,
        n=len(kept_r),
        n_empty_ref=skipped,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions,
        ref_words=ref_words,
    )


def wer(hyps: Sequence[str], refs: Sequence[str], lang: str) -> float:
    """Corpus WER in percent (see :func:`wer_details`); skipped empty references are logged."""
    result = wer_details(hyps, refs, lang)
    if result.n_empty_ref:
        log.warning(
            "WER (%s): skipped %d of %d pairs whose normalised reference is empty",
            lang,
            result.n_empty_ref,
            result.n + result.n_empty_ref,
        )
    return result.wer


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (default: 13a tokenizer, cased, one reference per hypothesis)."""

    _check_pairs(hyps, refs)
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """sacrebleu corpus chrF (default: char order 6, beta 2, no word n-grams)."""

    _check_pairs(hyps, refs)
    return float(sacrebleu.corpus_chrf(list(hyps), [list(refs)]).score)


def _edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    return int(Levenshtein.distance(list(a), list(b)))


def wer_max(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """fairseq's WER for deletion metrics, clipped: ``min(100, 100 * sum(ed) / sum(|ref|))``.

    Tokens are whitespace-separated words taken as they are (case and punctuation count). Every
    pair counts, including empty references (their hypothesis words are all insertions). If the
    references hold no word at all the result is 0.0 when no hypothesis has a word, else 100.0.
    """
    _check_pairs(hyps, refs)
    distance = 0
    ref_words = 0
    for h, r in zip(hyps, refs):
        r_items = r.split()
        distance += _edit_distance(r_items, h.split())
        ref_words += len(r_items)
    if ref_words == 0:
        return 100.0 if distance > 0 else 0.0
    return min(100.0, 100.0 * distance / ref_words)


def quality_row(
    task: str, lang_pair: str, hyps: Sequence[str], refs: Sequence[str], tgt_lang: str
) -> dict[str, Any]:
    """One quality-table row.

    ASR (``task="asr"``): ``{task, lang_pair, n, wer, n_empty_ref}`` with ``n`` the number of
    pairs given and ``n_empty_ref`` how many were left out of the WER (empty normalised
    reference). ST (``task="st"``): ``{task, lang_pair, n, bleu, chrf}``.
    """
    _check_pairs(hyps, refs)
    row: dict[str, Any] = {"task": task, "lang_pair": lang_pair, "n": len(hyps)}
    if task == "asr":
        result = wer_details(hyps, refs, tgt_lang)
        if result.n_empty_ref:
            log.warning(
                "%s %s: %d of %d references are empty after normalisation and not scored",
                task,
                lang_pair,
                result.n_empty_ref,
                len(refs),
            )
        row.update(wer=result.wer, n_empty_ref=result.n_empty_ref)
    elif task == "st":
        row.update(bleu=bleu(hyps, refs), chrf=chrf(hyps, refs))
    else:
        raise ValueError(f"task must be 'asr' or 'st', got {task!r}")
    return row


def comet(
    sources: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[str],
    checkpoint: str | Path,
    batch_size: int = 16,
    gpus: int = 0,
) -> float:
    """System-level COMET (x100) with a *local* checkpoint (the paper: wmt22-comet-da, COMET 2.2.4).

    Nothing is downloaded: ``checkpoint`` must be the ``model.ckpt`` of a COMET model already on
    disk, and the optional package ``unbabel-comet`` must be installed (``pip install -e
    '.[comet]'``). Raises DataError for a missing checkpoint and RuntimeError for a missing package.
    """
    _check_pairs(hyps, refs)
    _check_pairs(sources, refs)
    path = Path(checkpoint)
    if not path.is_file():
        raise DataError(
            f"decoding.comet_checkpoint: {path} not found; COMET models are never downloaded here, "
            "point this key at a local checkpoint (e.g. <wmt22-comet-da>/checkpoints/model.ckpt)"
        )
    try:
        from comet import load_from_checkpoint  # optional extra (caspes[comet]): imported only when used
    except ImportError:
        raise RuntimeError(
            "decoding.comet_checkpoint is set but the optional package unbabel-comet is not installed: "
            "pip install -e '.[comet]'"
        ) from None
    model = load_from_checkpoint(str(path))
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hyps, refs, strict=True)]
    output = model.predict(data, batch_size=batch_size, gpus=gpus, progress_bar=False)
    return 100.0 * float(output.system_score)
