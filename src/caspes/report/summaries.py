"""The study-wide summary TSVs: every model's quality (rule ``quality_table``) and every saliency
store's explanation metrics and cost (rule ``explanation_table``), one row per run (and map)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from caspes.core.tsv import write_tsv
from caspes.report.results import read_tsv

__all__ = ["quality_table", "explanation_row", "explanation_table"]

log = logging.getLogger(__name__)


def quality_table(quality_files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """The per-run quality TSVs (rule ``decode``: WER / BLEU / chrF ...) stacked in the given order,
    written as TSV to ``out_path``; logs and returns the table."""
    table = pd.concat([read_tsv(p) for p in quality_files], ignore_index=True)
    write_tsv(out_path, table)
    log.info("quality:\n%s", table.to_string(index=False))
    return table


def explanation_row(deletion_path: str | Path) -> dict[str, object]:
    """One row of :func:`explanation_table` for the deletion curve
    ``<model>/<pair>/<split>/deletion/<map>.tsv``: its unit, metric and AUC, the size AUC from
    ``size/<map>.tsv`` and the cost from ``saliency/<map>.timing.tsv`` of the same run (utterances,
    seconds per computed utterance, the devices used; utterances resumed from a partial store are
    not counted in the cost)."""
    path = Path(deletion_path)
    split_dir, name = path.parent.parent, path.stem
    model, pair, split = split_dir.parts[-3:]
    curve = read_tsv(path)
    size = read_tsv(split_dir / "size" / f"{name}.tsv")
    timing = read_tsv(split_dir / "saliency" / f"{name}.timing.tsv")
    n = int(timing["utterances"].sum())
    # Utterances taken from a partial store (resume) cost nothing in this attempt's seconds.
    computed = n - int(timing["resumed"].fillna(0).sum()) if "resumed" in timing else n
    return {
        "model": model, "direction": pair, "split": split, "map": name, "unit": curve["unit"][0],
        "metric": curve["metric"][0], "deletion_auc": curve["auc"][0], "size_auc": size["auc"][0],
        "utterances": n, "seconds_per_utterance": round(timing["seconds"].sum() / max(computed, 1), 3),
        "device": ",".join(sorted(set(timing["device"]))),
    }  # fmt: skip


def explanation_table(files: Iterable[str | Path], out_path: str | Path) -> pd.DataFrame:
    """Rule ``explanation_table``: a row (:func:`explanation_row`) per deletion curve among ``files``
    (those under a ``deletion/`` folder; the other outputs of the explain stage are skipped), written
    as TSV to ``out_path``; logs and returns the table."""
    rows = [explanation_row(p) for p in map(str, files) if "/deletion/" in p]
    table = pd.DataFrame(rows)
    write_tsv(out_path, table)
    log.info("\n%s", table.to_string(index=False))
    return table
