"""Logging set-up for workflow scripts: everything a rule prints goes to its Snakemake log file."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

__all__ = ["setup_rule_logging", "export_source_path"]


def setup_rule_logging(log_path: str | Path | None, level: int = logging.INFO) -> logging.Logger:
    """Send logging records, warnings and stderr (tqdm progress bars included) to ``log_path``.

    With no path (a script run by hand), records go to stderr. Returns the ``caspes`` logger.
    """
    handlers: list[logging.Handler]
    if log_path:
        path = Path(log_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
        handlers = [logging.StreamHandler(stream)]
    else:
        handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    return logging.getLogger("caspes")


def export_source_path(src: str | Path) -> None:
    """Prepend the checkout's ``src`` to ``PYTHONPATH`` of this process, so that every job it starts
    (local, on a cluster, or inside the conda environment of ``--sdm conda``) imports this package."""

    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(src)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(src), *parts])
