"""Self-describing checkpoints: save (atomically), load, load a model, average."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from caspes import __version__
from caspes.core.atomic import atomic_open
from caspes.core.manifest import DataError
from caspes.model import ModelDimensions, S2TModel

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "average_checkpoints"]

log = logging.getLogger(__name__)


# =========================================================================== checkpoints
def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_open(path, "wb", fsync=True) as f:
        torch.save(obj, f)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Write ``checkpoint`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(checkpoint, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this module (``weights_only`` unpickling: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"{path}: unreadable checkpoint ({path.stat().st_size} bytes; truncated or corrupt?): {reason}"
        ) from exc
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a caspes checkpoint (needs 'dims' and 'model')")
    return ckpt


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[S2TModel, dict[str, Any]]:
    """Model of a checkpoint (training or averaged), in eval mode on ``map_location``."""
    ckpt = load_checkpoint(path, map_location)
    model = S2TModel(ModelDimensions.from_dict(ckpt["dims"]))
    model.load_state_dict(ckpt["model"])
    model.to(map_location)
    model.eval()
    return model, ckpt


def average_checkpoints(paths: Sequence[str | Path], out_path: str | Path) -> Path:
    """Element-wise mean of the model weights of ``paths`` (fairseq ``average_checkpoints``).

    Floating tensors are averaged (accumulated in float64, stored in their own dtype);
    integer buffers (BatchNorm ``num_batches_tracked``) are taken from the last checkpoint.
    The output keeps dims, tokenizer, train config and version of the last checkpoint, adds
    ``averaged_from`` / ``averaged_steps``, and has no optimizer or RNG state.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("average_checkpoints needs at least one checkpoint")
    sums: dict[str, Tensor] = {}
    last: dict[str, Any] = {}
    steps: list[int | None] = []
    for k, path in enumerate(paths):
        ckpt = load_checkpoint(path, "cpu")
        state = ckpt["model"]
        if k == 0:
            first_dims, keys = ckpt["dims"], list(state)
            sums = {n: t.to(torch.float64).clone() for n, t in state.items() if t.is_floating_point()}
        else:
            if ckpt["dims"] != first_dims:
                raise ValueError(f"{path}: model dimensions differ from {paths[0]}")
            if list(state) != keys:
                raise ValueError(f"{path}: parameter names differ from {paths[0]}")
            for n, acc in sums.items():
                if state[n].shape != acc.shape:
                    raise ValueError(
                        f"{path}: '{n}' has shape {tuple(state[n].shape)}, expected {tuple(acc.shape)}"
                    )
                acc += state[n].to(torch.float64)
        steps.append(ckpt.get("step"))
        last = ckpt
    averaged = {
        n: (sums[n] / len(paths)).to(t.dtype) if n in sums else t.clone() for n, t in last["model"].items()
    }
    out = {
        "dims": last["dims"],
        "model": averaged,
        "step": last.get("step"),
        "train_config": last.get("train_config"),
        "tokenizer": last.get("tokenizer"),
        "caspes_version": last.get("caspes_version", __version__),
        "averaged_from": [str(p) for p in paths],
        "averaged_steps": steps,
    }
    log.info("averaged %d checkpoints (steps %s) into %s", len(paths), steps, out_path)
    return save_checkpoint(out_path, out)
