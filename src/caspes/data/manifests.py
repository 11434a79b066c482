"""The user's own manifests (checked and filtered) and corpus statistics."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from caspes.core.audio import audio_duration, is_archive_reference, resolve_audio_path
from caspes.core.manifest import (
    MANIFEST_COLUMNS,
    DataError,
    Skip,
    read_manifest,
    read_skipped,
    write_manifest,
    write_skipped,
)
from caspes.core.tsv import write_tsv
from caspes.core.zipstore import read_archive_array, read_npy
from caspes.data.policy import (
    FEATURE_SHIFT_S,
    MIN_DURATION_S,
    SkipLog,
    UtterancePolicy,
    check_duration,
    check_text,
)

__all__ = [
    "filter_manifest_rows",
    "STATS_COLUMNS",
    "corpus_statistics",
    "import_manifest",
    "corpus_statistics_to_file",
]

log = logging.getLogger(__name__)


def _duration_of(row: dict[str, str], manifest_path: Path) -> float:
    """Seconds of audio behind a manifest row: from the audio header, or from stored features."""
    audio = row["audio"]
    if is_archive_reference(audio):
        return read_archive_array(audio, manifest_path).shape[0] * FEATURE_SHIFT_S
    path = resolve_audio_path(audio, manifest_path)
    if path.suffix == ".npy":
        return read_npy(path).shape[0] * FEATURE_SHIFT_S
    return audio_duration(path)


def filter_manifest_rows(
    rows: Iterable[dict[str, str]],
    manifest_path: str | Path,
    policy: UtterancePolicy,
    needed_texts: tuple[str, ...] = ("src_text", "tgt_text"),
) -> tuple[list[dict[str, str]], SkipLog]:
    """Keep the rows whose audio (or stored features) is readable, texts non-empty and length in bounds.

    Rows must carry ``_line`` (see :func:`caspes.core.manifest.read_manifest`); skips name ``file:line``.
    Texts named in ``needed_texts`` that are absent as columns are not checked.
    """
    manifest_path = Path(manifest_path)
    skips = SkipLog(policy)
    kept: list[dict[str, str]] = []
    for row in rows:
        source = f"{manifest_path}:{row.get('_line', '?')}"
        uid = row["id"]
        skip = check_text(uid, {k: row[k] for k in needed_texts if k in row}, source)
        if skip is None:
            try:
                duration = _duration_of(row, manifest_path)
            except DataError as exc:
                reason = "missing_audio" if "not found" in str(exc) else "unreadable_audio"
                skip = Skip(uid, source, reason, str(exc))
            else:
                skip = check_duration(uid, duration, policy, source)
        if skip is None:
            kept.append(row)
        else:
            skips.add(skip)
    return kept, skips


STATS_COLUMNS = (
    "lang",
    "split",
    "utterances",
    "skipped",
    "hours",
    "mean_duration_s",
    "max_duration_s",
    "src_words",
    "src_vocabulary",
    "tgt_vocabulary",
    "speakers",
)


def corpus_statistics(
    manifests: dict[tuple[str, str], Path], skipped: dict[tuple[str, str], Path]
) -> list[dict]:
    """One row per (language, split): utterances, skips, hours, mean/max duration, vocabularies.

    Durations come from ``n_frames`` (10 ms shift, 25 ms window), vocabularies from whitespace words.
    """

    out = []
    for (lang, split), path in sorted(manifests.items()):
        rows = read_manifest(path)
        durations = [(int(r["n_frames"]) - 1) * FEATURE_SHIFT_S + MIN_DURATION_S for r in rows]
        src_words = [w for r in rows for w in r.get("src_text", "").split()]
        tgt_words = [w for r in rows for w in r.get("tgt_text", "").split()]
        n_skipped = len(read_skipped(skipped[(lang, split)])) if (lang, split) in skipped else 0
        out.append(
            {
                "lang": lang,
                "split": split,
                "utterances": len(rows),
                "skipped": n_skipped,
                "hours": round(sum(durations) / 3600, 4),
                "mean_duration_s": round(sum(durations) / len(durations), 3) if durations else 0.0,
                "max_duration_s": round(max(durations), 3) if durations else 0.0,
                "src_words": len(src_words),
                "src_vocabulary": len(set(src_words)),
                "tgt_vocabulary": len(set(tgt_words)),
                "speakers": len({r.get("speaker", "") for r in rows}),
            }
        )
    return out


def import_manifest(
    source_path: str | Path,
    manifest_path: str | Path,
    skipped_path: str | Path,
    policy: UtterancePolicy,
    src_lang: str,
    tgt_lang: str,
) -> tuple[int, SkipLog]:
    """Import a fairseq-S2T TSV manifest as one of our manifests.

    Audio stays where it is: ``audio`` entries are rewritten relative to the new manifest's folder
    (zip references keep their byte range). Missing ``src_lang``/``tgt_lang`` columns are filled
    from the arguments; a row whose language disagrees with them is a DataError (it belongs in
    another manifest). Missing ``src_text`` (transcript) is allowed for ST-only data; it is left
    empty and not checked. Returns (rows written, skips).
    """

    source_path = Path(source_path)
    manifest_path = Path(manifest_path)
    rows = read_manifest(source_path)
    for row in rows:
        for col, expected in (("src_lang", src_lang), ("tgt_lang", tgt_lang)):
            value = row.setdefault(col, expected) or expected
            if value != expected:
                raise DataError(
                    f"{source_path}:{row['_line']}: {col} is '{value}' but this manifest is imported as "
                    f"{src_lang}->{tgt_lang}"
                )
            row[col] = value
    needed = ("src_text", "tgt_text") if rows and "src_text" in rows[0] else ("tgt_text",)
    kept, skips = filter_manifest_rows(rows, source_path, policy, needed_texts=needed)
    out_dir = manifest_path.parent.resolve()
    for row in kept:
        audio = row["audio"]
        target = resolve_audio_path(audio, source_path).resolve()
        rel = Path(os.path.relpath(target, out_dir)).as_posix()
        if is_archive_reference(audio):
            _, offset, length = audio.rsplit(":", 2)
            rel = f"{rel}:{offset}:{length}"
        row["audio"] = rel
    columns = list(MANIFEST_COLUMNS)
    if kept and "word_times" in kept[0]:
        columns.append("word_times")
    write_manifest(manifest_path, kept, columns)
    write_skipped(skipped_path, skips.skips)
    skips.report(f"import {source_path}", len(kept))
    return len(kept), skips


def corpus_statistics_to_file(
    manifests: dict[tuple[str, str], Path], skipped: dict[tuple[str, str], Path], out_path: str | Path
) -> pd.DataFrame:
    """:func:`corpus_statistics` written as TSV (:data:`STATS_COLUMNS`) and logged."""
    table = write_tsv(out_path, corpus_statistics(manifests, skipped), columns=list(STATS_COLUMNS))
    log.info("corpus statistics:\n%s", table.to_string(index=False))
    return table
