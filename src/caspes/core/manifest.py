"""Manifests (fairseq-S2T TSV + languages and word times), skipped-utterance logs and the project's
data error."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from caspes.core.atomic import atomic_open

__all__ = [
    "MANIFEST_COLUMNS",
    "REQUIRED_COLUMNS",
    "SKIPPED_COLUMNS",
    "DataError",
    "Skip",
    "read_manifest",
    "write_manifest",
    "write_skipped",
    "read_skipped",
    "format_word_times",
    "parse_word_times",
]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id",
    "audio",
    "n_frames",
    "src_text",
    "tgt_text",
    "speaker",
    "src_lang",
    "tgt_lang",
)
"""Our manifest columns (fairseq-S2T's plus src_lang/tgt_lang); ``word_times`` is appended when known."""


REQUIRED_COLUMNS: tuple[str, ...] = ("id", "audio", "n_frames", "tgt_text")
"""What fairseq-S2T itself requires of a manifest."""


SKIPPED_COLUMNS: tuple[str, ...] = ("id", "source", "reason", "detail")


class DataError(ValueError):
    """Bad input data; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class Skip:
    """One utterance left out of a manifest, with where it came from and why."""

    id: str
    source: str  # "file:line" of the row that described it
    reason: str  # short machine-readable reason, e.g. "missing_audio", "too_long", "empty_text"
    detail: str = ""


def _check_field(value: str, column: str, path: Path | str, line: int) -> str:
    if any(ch in value for ch in "\t\n\r"):
        raise DataError(f"{path}:{line}: column '{column}' contains a tab or newline: {value!r}")
    return value


def read_manifest(path: str | Path, required: Sequence[str] = REQUIRED_COLUMNS) -> list[dict[str, str]]:
    """Read a fairseq-S2T TSV manifest.

    Each returned row also carries ``_line`` (1-based line number in the file) so that later
    checks can name the exact line. Raises DataError for a missing file, a missing required
    column, a row with the wrong number of fields or a duplicated id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found")
    rows: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty manifest (no header line)") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}:1: missing required column(s) {missing}; header is {header}")
        for line_no, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"{path}:{line_no}: expected {len(header)} tab-separated fields, got {len(fields)}"
                )
            row = dict(zip(header, fields))
            uid = row["id"]
            if uid in seen:
                raise DataError(f"{path}:{line_no}: duplicate id '{uid}' (first on line {seen[uid]})")
            seen[uid] = line_no
            row["_line"] = str(line_no)
            rows.append(row)
    return rows


def write_manifest(
    path: str | Path, rows: Iterable[dict[str, object]], columns: Sequence[str] | None = None
) -> int:
    """Write rows as a fairseq-S2T TSV manifest; returns the number of rows written.

    ``columns`` defaults to MANIFEST_COLUMNS plus ``word_times`` if any row has it. Keys starting
    with ``_`` are internal and never written.
    """
    path = Path(path)
    rows = list(rows)
    if columns is None:
        columns = list(MANIFEST_COLUMNS)
        if any(r.get("word_times") for r in rows):
            columns.append("word_times")
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n", escapechar=None)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            writer.writerow([_check_field(str(row.get(c, "")), c, path, i + 2) for c in columns])
    return len(rows)


def write_skipped(path: str | Path, skips: Iterable[Skip]) -> int:
    """Write the skipped-utterance report (always written, header only when nothing was skipped)."""
    rows = [
        {"id": s.id, "source": s.source, "reason": s.reason, "detail": s.detail.replace("\t", " ")}
        for s in skips
    ]
    return write_manifest(path, rows, SKIPPED_COLUMNS)


def read_skipped(path: str | Path) -> list[Skip]:
    return [
        Skip(r["id"], r["source"], r["reason"], r["detail"])
        for r in read_manifest(path, required=SKIPPED_COLUMNS)
    ]


def format_word_times(times: Iterable[tuple[float, float]]) -> str:
    """``[(0.12, 0.4), ...]`` → ``"0.120:0.400 ..."`` (millisecond precision)."""
    return " ".join(f"{s:.3f}:{e:.3f}" for s, e in times)


def parse_word_times(value: str, where: str = "") -> list[tuple[float, float]]:
    """Inverse of :func:`format_word_times`; DataError (naming ``where``) on a malformed pair."""
    out: list[tuple[float, float]] = []
    for item in value.split():
        try:
            start, end = item.split(":")
            out.append((float(start), float(end)))
        except ValueError:
            raise DataError(f"{where}: malformed word time {item!r} (expected start:end)") from None
    return out
