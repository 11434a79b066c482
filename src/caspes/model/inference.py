"""Helpers shared by everything that runs a trained model: device, dtype, eval mode, batching
and input checks."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from caspes.tokenizer import BOS_ID

__all__ = [
    "resolve_device",
    "autocast_bf16",
    "native_bf16",
    "resolve_bf16",
    "compile_stacks",
    "model_device_dtype",
    "eval_mode",
    "as_batch",
    "check_decoder_input",
    "never_generated",
]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → ``cuda`` when available, else ``cpu``; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices natively: a CUDA device with bf16 support, or a
    CPU whose oneDNN build finds AVX512-BF16 or AMX (elsewhere bf16 is emulated, and slower than
    fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_bf16(setting: bool | str, device: torch.device) -> bool:
    """A bf16 setting (``true``, ``false`` or ``"auto"``: where :func:`native_bf16`) as a bool."""
    if isinstance(setting, bool):
        return setting
    if setting == "auto":
        return native_bf16(device)
    raise ValueError(f"bf16 must be true, false or 'auto', got {setting!r}")


def autocast_bf16(device: torch.device, bf16: bool | str):
    """bf16 autocast on ``device`` (CUDA or CPU) when ``bf16`` (or ``"auto"`` and the device has
    native bf16, :func:`resolve_bf16`), else a no-op context.

    On CPU, torch's autocast runs linear layers, convolutions and batched matrix products in
    bf16 (oneDNN: native on CPUs with AVX512-BF16 or AMX, emulated and slower elsewhere) and
    keeps reductions such as softmax in fp32.  Callers cast logits to fp32 before any log-softmax
    or KL."""
    if device.type in ("cuda", "cpu") and resolve_bf16(bf16, device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_stacks(model: torch.nn.Module, dynamic: bool = True, backend: str = "inductor") -> list[str]:
    """Compile ``model``'s encoder and decoder stacks in place with ``torch.compile``
    (``nn.Module.compile``: the module's call goes through the compiled graph; weights, state dict
    and every other method are unchanged). ``dynamic=True`` traces one graph for any batch size and
    length, so the engine's varying batch sizes and utterance lengths do not recompile.

    The first call of each stack compiles it (seconds to minutes); results agree with eager mode
    up to floating-point rounding, not bit for bit (fused kernels reorder sums). ``backend`` is
    torch.compile's (``"eager"`` only traces: for tests). Returns the names of the compiled
    submodules (those of ``encoder``/``decoder`` the model has).
    """
    compiled = []
    for name in ("encoder", "decoder"):
        module = getattr(model, name, None)
        if isinstance(module, torch.nn.Module):
            module.compile(dynamic=dynamic, backend=backend)
            compiled.append(name)
    if not compiled:
        raise ValueError(f"{type(model).__name__} has no encoder or decoder module to compile")
    return compiled


# --------------------------------------------------------------------------- helpers
def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode for the block; the previous training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def as_batch(
    features: Sequence[np.ndarray] | Tensor,
    lengths: Sequence[int] | Tensor | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """List of (T_i, F) arrays, or a padded (B, T, F) tensor (+ lengths), -> padded tensor, lengths."""
    if isinstance(features, Tensor):
        if features.dim() != 3:
            raise ValueError(f"features must be (B, T, F), got {tuple(features.shape)}")
        if lengths is None:
            lens = torch.full((features.size(0),), features.size(1), dtype=torch.long)
        else:
            lens = torch.as_tensor(lengths, dtype=torch.long)
        return features.to(device=device, dtype=dtype), lens.to(device)
    if lengths is not None:
        raise ValueError("lengths are taken from the arrays when features is a list")
    arrays = [np.asarray(f) for f in features]
    if any(a.ndim != 2 for a in arrays) or len({a.shape[1] for a in arrays}) > 1:
        raise ValueError(f"features must be (T, F) arrays of one F, got {[a.shape for a in arrays]}")
    lens = torch.tensor([a.shape[0] for a in arrays], dtype=torch.long)
    batch = torch.zeros(len(arrays), int(lens.max()), arrays[0].shape[1], dtype=dtype)
    for i, a in enumerate(arrays):
        batch[i, : a.shape[0]] = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
    return batch.to(device), lens.to(device)


def never_generated(dims: Any) -> list[int]:
    """Token ids a search never chooses: ``dims.suppress_ids`` when the model gives them (an adapted
    Hugging Face model: its special tokens but EOS), else PAD and ``<s>`` (the CTC blank)."""
    ids = getattr(dims, "suppress_ids", None)
    if ids is not None:
        return sorted(int(i) for i in ids)
    return sorted({dims.pad_id, BOS_ID} - {dims.eos_id})


# --------------------------------------------------------------------------- extraction
def check_decoder_input(dec: Sequence[int], dims: Any) -> list[int]:
    ids = [int(t) for t in dec]
    if not ids or ids[0] != dims.eos_id:
        raise ValueError(f"decoder input must start with EOS ({dims.eos_id}), got {ids[:3]}")
    if len(ids) > dims.max_target_positions:
        raise ValueError(
            f"decoder input of {len(ids)} exceeds max_target_positions={dims.max_target_positions}"
        )
    for t in ids:
        if not 0 <= t < dims.vocab_size or t == dims.pad_id:
            raise ValueError(f"decoder input token {t} is PAD or outside [0, {dims.vocab_size})")
    return ids
