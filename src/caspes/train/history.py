"""``history.tsv`` of a training stage: one row of losses, learning rate and timing per step."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from caspes.core.atomic import atomic_write_text

__all__ = ["HISTORY_FILE", "HISTORY_COLUMNS", "History"]

log = logging.getLogger(__name__)

#: File name of the history in a stage folder.
HISTORY_FILE = "history.tsv"

#: Columns of ``history.tsv`` (one row per optimizer step).
HISTORY_COLUMNS: tuple[str, ...] = (
    "step",
    "epoch",
    "lr",
    "loss",
    "ce",
    "ctc_src",
    "ctc_tgt",
    "dev_loss",
    "wall_s",
)


class History:
    """``history.tsv``: header + one row per step; flushed on every row.

    Args:
        path: the file; (re)written at once with the header.
        keep_rows: None on a fresh run (the file starts empty); on a resumed run, the
            number of rows the checkpoint saw: the rows after those (written after the
            checkpoint) are dropped, so that the resumed run writes them again.
    """

    def __init__(self, path: Path, keep_rows: int | None) -> None:
        self.path = path
        if keep_rows is None or not path.is_file():
            if keep_rows:
                log.warning("%s: missing; the rows before the resumed step are lost", path)
            lines = ["\t".join(HISTORY_COLUMNS) + "\n"]
            self.rows = 0
        else:
            old = path.read_text(encoding="utf-8").splitlines(keepends=True)
            body = old[1 : 1 + keep_rows]
            if len(body) < keep_rows:
                log.warning("%s: has %d rows, the checkpoint expected %d", path, len(body), keep_rows)
            lines = ["\t".join(HISTORY_COLUMNS) + "\n", *body]
            self.rows = len(body)
        atomic_write_text(path, "".join(lines))
        self._f = open(path, "a", encoding="utf-8")

    def write(self, values: dict[str, Any]) -> None:
        """Append the row ``values`` (by column name; a missing or None value is left empty)."""
        self._f.write("\t".join(_fmt(values.get(c)) for c in HISTORY_COLUMNS) + "\n")
        self._f.flush()
        self.rows += 1

    def sync(self) -> None:
        """Flush the rows to disk (before a checkpoint that counts them is written)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.8g}"
    return str(value)
