"""Result tables as tab-separated files (pandas' CSV writer, written atomically)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from caspes.core.atomic import atomic_open

__all__ = ["write_tsv"]


def write_tsv(
    path: str | Path,
    table: pd.DataFrame | Iterable[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    na_rep: str = "",
) -> pd.DataFrame:
    """Write ``table`` (a DataFrame, or records that become one, with ``columns`` in that order
    when given) as TSV with a header and no index; missing values print as ``na_rep``.
    Returns the DataFrame written."""
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table), columns=columns)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        frame.to_csv(f, sep="\t", index=False, na_rep=na_rep)
    return frame
