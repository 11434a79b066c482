"""The checkpoint folder of a training stage: ``checkpoint_<step>.pt`` files and
``checkpoint_last.pt``, RNG states for bitwise resumption, discarding checkpoints of
changed settings, averaging the last ones."""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caspes.core.atomic import atomic_path
from caspes.model import ModelDimensions
from caspes.model.checkpoint import average_checkpoints, load_checkpoint, save_checkpoint
from caspes.tokenizer import Tokenizer
from caspes.train.compat import config_differences
from caspes.train.config import TrainConfig
from caspes.train.history import HISTORY_FILE

__all__ = [
    "CHECKPOINT_LAST",
    "rng_state",
    "set_rng_state",
    "numbered_checkpoints",
    "newest_checkpoint",
    "link_or_copy",
    "write_checkpoint",
    "discard_stale_checkpoints",
    "average_last_checkpoints",
]

log = logging.getLogger(__name__)

#: File name of a stage's newest checkpoint (a link to the newest numbered one, or the final one).
CHECKPOINT_LAST = "checkpoint_last.pt"


def rng_state() -> dict[str, Any]:
    """States of the Python, NumPy, torch (and, once initialised, CUDA) global generators."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(name), [int(x) for x in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`rng_state`'s ``state``."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def numbered_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the ``checkpoint_<step>.pt`` files in ``out_dir``, by step."""
    found = []
    for p in out_dir.glob("checkpoint_*.pt"):
        suffix = p.stem[len("checkpoint_") :]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def newest_checkpoint(out_dir: Path) -> Path | None:
    """``checkpoint_last.pt``, else the numbered checkpoint of the highest step, else None.

    A workflow manager may delete the declared output (``checkpoint_last.pt``) of a killed
    job before rerunning it; the numbered checkpoints beside it survive.
    """
    last = out_dir / CHECKPOINT_LAST
    if last.is_file():
        return last
    numbered = numbered_checkpoints(out_dir)
    return numbered[-1][1] if numbered else None


def link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` a copy (hard link if possible) of ``src``."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def write_checkpoint(out_dir: Path, ckpt: dict[str, Any], step: int | None, keep_last: int) -> None:
    """Save ``ckpt`` as ``checkpoint_last.pt``; with a ``step``, save it as
    ``checkpoint_<step>.pt``, link ``checkpoint_last.pt`` to it and delete all but the
    ``keep_last`` newest numbered checkpoints."""
    last_path = out_dir / CHECKPOINT_LAST
    if step is None:
        save_checkpoint(last_path, ckpt)
        return
    path = save_checkpoint(out_dir / f"checkpoint_{step}.pt", ckpt)
    link_or_copy(path, last_path)
    for _, old in numbered_checkpoints(out_dir)[: -keep_last or None]:
        old.unlink(missing_ok=True)


def discard_stale_checkpoints(
    out_dir: Path, dims: ModelDimensions, config: TrainConfig, tokenizer: Tokenizer
) -> bool:
    """Remove checkpoints and history written with other settings; True if something was removed.

    The workflow reruns a training stage when one of its settings changes: the checkpoints
    of the old settings must then not be resumed. Settings that may change between
    resumptions (``max_steps``, checkpoint and logging intervals, device) do not count, so
    raising ``max_steps`` continues training where it stopped.
    """
    numbered = numbered_checkpoints(out_dir)
    newest = newest_checkpoint(out_dir)
    if newest is None:
        return False
    old = load_checkpoint(newest, "cpu")
    reasons = config_differences(old.get("train_config") or {}, config)
    if old.get("dims") != dims.asdict():
        reasons.append("model dimensions")
    if (old.get("tokenizer") or {}).get("model") != tokenizer.path.read_bytes():
        reasons.append("tokenizer")
    if not reasons:
        return False
    log.warning(
        "%s: settings changed since its checkpoints were written (%s): starting over", out_dir, reasons
    )
    for path in [p for _, p in numbered] + [out_dir / CHECKPOINT_LAST, out_dir / HISTORY_FILE]:
        path.unlink(missing_ok=True)
    return True


def average_last_checkpoints(stage_dir: str | Path, k: int, out_path: str | Path) -> Path:
    """Average the last ``k`` numbered checkpoints of a stage (``checkpoint_last.pt`` if none)."""
    numbered = [p for _, p in numbered_checkpoints(Path(stage_dir))][-k:]
    if not numbered:
        numbered = [Path(stage_dir) / CHECKPOINT_LAST]
    log.info("averaging %d checkpoint(s): %s", len(numbered), ", ".join(p.name for p in numbered))
    return average_checkpoints(numbered, out_path)
