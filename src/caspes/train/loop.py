"""The training loop: resume, history, periodic checkpoints and dev loss; stage entry points."""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from caspes import __version__
from caspes.core.atomic import atomic_path, atomic_write_text
from caspes.features import FeatureReader
from caspes.model import ModelDimensions, S2TModel
from caspes.model.checkpoint import average_checkpoints, load_checkpoint, save_checkpoint
from caspes.model.inference import autocast_bf16, resolve_device
from caspes.tokenizer import EOS_ID, PAD_ID, Tokenizer
from caspes.train.augment import spec_augment
from caspes.train.config import TrainConfig, make_scheduler
from caspes.train.data import TrainingData
from caspes.train.losses import compute_losses, count_unalignable, evaluate_loss

__all__ = ["HISTORY_COLUMNS", "train", "train_stage", "discard_stale_checkpoints", "average_last_checkpoints"]

log = logging.getLogger(__name__)

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


_CHECKPOINT_LAST = "checkpoint_last.pt"


# Fields that may change between a run and its resumption without changing the result.
_RESUMABLE_FIELDS = frozenset(
    {"max_steps", "checkpoint_every", "keep_last", "dev_every", "device", "num_threads", "log_every"}
)


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (str(name), [int(x) for x in keys], int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _numbered_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in out_dir.glob("checkpoint_*.pt"):
        suffix = p.stem[len("checkpoint_") :]
        if suffix.isdigit():
            found.append((int(suffix), p))
    return sorted(found)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` a copy (hard link if possible) of ``src``."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


# =========================================================================== history
class _History:
    """``history.tsv``: header + one row per step; flushed on every row."""

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
        self._f.write("\t".join(_fmt(values.get(c)) for c in HISTORY_COLUMNS) + "\n")
        self._f.flush()
        self.rows += 1

    def sync(self) -> None:
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


# =========================================================================== training
def _config_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    current = new.asdict()
    return sorted(
        k for k in set(old) | set(current) if k not in _RESUMABLE_FIELDS and old.get(k) != current.get(k)
    )


def train(
    model_dims: ModelDimensions,
    config: TrainConfig,
    train_data: TrainingData,
    dev_data: TrainingData | None,
    out_dir: str | Path,
    init_checkpoint: str | Path | None = None,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train (or resume training) a model; returns the path of ``checkpoint_last.pt``.

    Args:
        model_dims: dimensions of the model (must match the tokenizer's vocabulary).
        config: hyper-parameters.
        train_data: training utterances (its batching and filtering are used as built;
            :meth:`TrainingData.from_config` builds it from ``config``).
        dev_data: dev utterances for the dev loss, or None.
        out_dir: where ``history.tsv`` and the checkpoints go.  If it holds
            ``checkpoint_last.pt`` the run resumes from it (model, optimizer, scheduler,
            RNG states, step, epoch and position in the epoch); ``init_checkpoint`` is then
            ignored.
        init_checkpoint: start from this checkpoint's *model weights* (second stage);
            optimizer and scheduler start fresh.  Its dims must equal ``model_dims`` up to
            dropout and its tokenizer must be ``train_data``'s.
        progress: show a tqdm progress bar.
        callback: called as ``callback(step, parts)`` after every step (after that step's
            history row and checkpoint); ``parts`` holds the logged numbers.  An exception
            raised there stops training (tests use it to simulate a kill).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous_threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(model_dims, config, train_data, dev_data, out_dir, init_checkpoint, progress, callback)
    finally:
        torch.set_num_threads(previous_threads)


def _check_compatible(dims: ModelDimensions, data: TrainingData, what: str) -> None:
    vocab = len(data.tokenizer)
    if dims.vocab_size < vocab:
        raise ValueError(
            f"model vocab_size={dims.vocab_size} < {what} tokenizer size {vocab} ({data.tokenizer.path})"
        )
    if dims.vocab_size > vocab:
        log.warning(
            "model vocab_size=%d > tokenizer size %d: %d ids are never used",
            dims.vocab_size,
            vocab,
            dims.vocab_size - vocab,
        )
    if dims.pad_id != PAD_ID or dims.eos_id != EOS_ID:
        raise ValueError(
            f"model pad/eos ids ({dims.pad_id}, {dims.eos_id}) differ from the tokenizer's ({PAD_ID}, {EOS_ID})"
        )
    if data.max_decoder_input_length > dims.max_target_positions:
        raise ValueError(
            f"{what}: a decoder input of {data.max_decoder_input_length} tokens exceeds max_target_positions="
            f"{dims.max_target_positions}; build the data with max_target_positions to skip such utterances"
        )
    if data.n_mels is not None and data.n_mels != dims.n_mels:
        raise ValueError(f"{what}: features have {data.n_mels} bins, the model expects {dims.n_mels}")


def _same_dims_but_dropout(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "dropout"} == {k: v for k, v in b.items() if k != "dropout"}


def _train(
    dims: ModelDimensions,
    config: TrainConfig,
    data: TrainingData,
    dev_data: TrainingData | None,
    out_dir: Path,
    init_checkpoint: str | Path | None,
    progress: bool,
    callback: Callable[[int, dict[str, float]], None] | None,
) -> Path:

    device = resolve_device(config.device)
    use_bf16 = config.bf16 and device.type == "cuda"
    _check_compatible(dims, data, data.name)
    if dev_data is not None:
        _check_compatible(dims, dev_data, dev_data.name)
        if dev_data.tokenizer_bytes != data.tokenizer_bytes:
            raise ValueError("dev and training data use different tokenizers")
    st_probability = config.effective_st_probability
    if st_probability > 0 and not data.need_translation:
        missing = sum(u.tgt_ids is None for u in data.utterances)
        if missing:
            raise ValueError(
                f"stage asr_st needs translations but {missing} training utterances have none; "
                "build TrainingData with need_translation=True (TrainingData.from_config does)"
            )

    last_path = out_dir / _CHECKPOINT_LAST
    resume_path = last_path
    if not last_path.is_file() and _numbered_checkpoints(out_dir):
        # A workflow manager may delete the declared output (checkpoint_last.pt) of a killed
        # job before rerunning it; the numbered checkpoints beside it survive.
        resume_path = _numbered_checkpoints(out_dir)[-1][1]
    resume = load_checkpoint(resume_path, "cpu") if resume_path.is_file() else None
    if resume is not None:
        if resume["dims"] != dims.asdict():
            raise ValueError(
                f"{resume_path}: model dimensions differ from the requested ones; use another out_dir"
            )
        if resume.get("tokenizer", {}).get("model") != data.tokenizer_bytes:
            raise ValueError(f"{resume_path}: was trained with another tokenizer than {data.tokenizer.path}")
        diffs = _config_differences(resume.get("train_config") or {}, config)
        if diffs:
            log.warning("%s: training config differs from the checkpoint's in %s", resume_path, diffs)
        if resume["step"] >= config.max_steps:
            log.info(
                "%s: already at step %d (max_steps=%d), nothing to do",
                resume_path,
                resume["step"],
                config.max_steps,
            )
            if resume_path != last_path:
                _link_or_copy(resume_path, last_path)
            return last_path

    # Model, optimizer, scheduler: deterministic construction from the seed.
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    model = S2TModel(dims)
    if resume is None and init_checkpoint is not None:
        init = load_checkpoint(init_checkpoint, "cpu")
        if not _same_dims_but_dropout(init["dims"], dims.asdict()):
            raise ValueError(f"{init_checkpoint}: model dimensions differ from the requested ones")
        init_tok = (init.get("tokenizer") or {}).get("model")
        if init_tok is not None and init_tok != data.tokenizer_bytes:
            raise ValueError(
                f"{init_checkpoint}: was trained with another tokenizer than {data.tokenizer.path}"
            )
        model.load_state_dict(init["model"])
        log.info("initialised model weights from %s (step %s)", init_checkpoint, init.get("step"))
    model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.peak_lr,
        betas=config.betas,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    scheduler = make_scheduler(optimizer, config)

    step, epoch, batch_in_epoch, wall_offset, unalignable = 0, 1, 0, 0.0, 0
    history_rows: int | None = None
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        step, epoch, batch_in_epoch = int(resume["step"]), int(resume["epoch"]), int(resume["batch_in_epoch"])
        wall_offset = float(resume.get("wall_s", 0.0))
        unalignable = int(resume.get("ctc_unalignable_seen", 0))
        history_rows = int(resume["history_rows"])
        _set_rng_state(resume["rng"])
        log.info("resuming from step %d (epoch %d, batch %d) of %s", step, epoch, batch_in_epoch, resume_path)
        del resume
    history = _History(out_dir / "history.tsv", history_rows)

    n_params = model.num_parameters()
    log.info(
        "training %s model: %d parameters, stage %s (st_probability %.2f), %d steps, device %s%s",
        "x".join(map(str, (dims.d_model, dims.encoder_layers, dims.decoder_layers))),
        n_params,
        config.stage,
        st_probability,
        config.max_steps,
        device,
        " (bf16)" if use_bf16 else "",
    )
    log.info(
        "%s: %d utterances, %d batches per epoch; skipped %d (%s)",
        data.name,
        len(data),
        len(data.batches),
        len(data.skips),
        ", ".join(f"{r} {n}" for r, n in sorted(data.skipped.items())) or "none",
    )
    if dev_data is not None:
        log.info(
            "%s: %d utterances, %d batches; skipped %d (%s)",
            dev_data.name,
            len(dev_data),
            len(dev_data.batches),
            len(dev_data.skips),
            ", ".join(f"{r} {n}" for r, n in sorted(dev_data.skipped.items())) or "none",
        )

    tokenizer_entry = {"path": str(data.tokenizer.path), "model": data.tokenizer_bytes}

    def checkpoint(numbered: bool) -> None:
        history.sync()
        ckpt = {
            "dims": dims.asdict(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "rng": _rng_state(),
            "train_config": config.asdict(),
            "tokenizer": tokenizer_entry,
            "caspes_version": __version__,
            "history_rows": history.rows,
            "wall_s": wall_offset + (time.monotonic() - t_start),
            "ctc_unalignable_seen": unalignable,
        }
        if numbered:
            path = save_checkpoint(out_dir / f"checkpoint_{step}.pt", ckpt)
            _link_or_copy(path, last_path)
            for _, old in _numbered_checkpoints(out_dir)[: -config.keep_last or None]:
                old.unlink(missing_ok=True)
        else:
            save_checkpoint(last_path, ckpt)

    t_start = time.monotonic()
    t_log, steps_since_log = t_start, 0
    st_draws = data.st_choices(epoch, st_probability)
    order = data.epoch_batches(epoch)
    bar = tqdm(total=config.max_steps, initial=step, disable=not progress, desc="train", mininterval=2)
    try:
        while step < config.max_steps:
            if batch_in_epoch >= len(order):
                epoch, batch_in_epoch = epoch + 1, 0
                order = data.epoch_batches(epoch)
                st_draws = data.st_choices(epoch, st_probability)
            indices = order[batch_in_epoch]
            batch_in_epoch += 1
            step += 1
            batch = data.collate(indices, st_draws[indices])
            if config.specaugment:
                batch.features = spec_augment(
                    batch.features, batch.lengths, config, np.random.default_rng([config.seed, step, 2])
                )
            batch = batch.to(device)
            lr = optimizer.param_groups[0]["lr"]
            with autocast_bf16(device, use_bf16):
                output = model(batch.features, batch.lengths, batch.decoder_input)
            parts = compute_losses(output, batch, config)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"step {step}: non-finite loss {float(loss)} (batch {batch.ids[:3]}...)"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            scheduler.step()
            unalignable += count_unalignable(
                batch,
                output.encoder_lengths,
                config,
                output.ctc_src_log_probs is not None,
                output.ctc_tgt_log_probs is not None,
            )

            values: dict[str, Any] = {
                "step": step,
                "epoch": epoch,
                "lr": float(lr),
                "loss": loss.item(),
                "ce": parts["ce"].item(),
                "ctc_src": parts["ctc_src"].item(),
                "ctc_tgt": parts["ctc_tgt"].item(),
                "dev_loss": None,
            }
            if dev_data is not None and config.dev_every > 0 and step % config.dev_every == 0:
                values["dev_loss"] = evaluate_loss(model, dev_data, config.stage, device, use_bf16)
                log.info("step %d: dev loss %.4f", step, values["dev_loss"])
            values["wall_s"] = round(wall_offset + (time.monotonic() - t_start), 3)
            history.write(values)
            bar.update(1)
            steps_since_log += 1
            if config.log_every > 0 and step % config.log_every == 0:
                now = time.monotonic()
                log.info(
                    "step %d epoch %d: loss %.4f (ce %.4f, ctc_src %.4f, ctc_tgt %.4f) lr %.3g, %.2f steps/s%s",
                    step,
                    epoch,
                    values["loss"],
                    values["ce"],
                    values["ctc_src"],
                    values["ctc_tgt"],
                    lr,
                    steps_since_log / max(now - t_log, 1e-9),
                    f", {unalignable} CTC-unalignable samples so far" if unalignable else "",
                )
                t_log, steps_since_log = now, 0
            numbered = config.checkpoint_every > 0 and step % config.checkpoint_every == 0
            if numbered or step == config.max_steps:
                checkpoint(numbered)
            if callback is not None:
                callback(step, {k: v for k, v in values.items() if v is not None})
        if not last_path.is_file():  # max_steps == 0 on a fresh run: save the initial model
            checkpoint(False)
    finally:
        bar.close()
        history.close()
    if unalignable:
        log.warning(
            "%d training samples had a CTC target longer than their encoder output (loss zeroed)", unalignable
        )
    log.info("finished at step %d (epoch %d): %s", step, epoch, last_path)
    return last_path


# =========================================================================== workflow entry points
def train_stage(
    train_manifests: Sequence[str | Path],
    dev_manifests: Sequence[str | Path],
    tokenizer_path: str | Path,
    dims: dict[str, Any],
    settings: dict[str, Any],
    out_dir: str | Path,
    init_checkpoint: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """One training stage from workflow settings: feature manifests, a tokenizer, a dims dict
    (without ``vocab_size``, which the tokenizer gives) and TrainConfig fields."""
    tokenizer = Tokenizer(tokenizer_path)
    model_dims = ModelDimensions.from_dict({**dims, "vocab_size": len(tokenizer)})
    config = TrainConfig.from_dict(settings)
    limit = model_dims.max_target_positions

    def data(manifests: Sequence[str | Path], name: str) -> TrainingData:
        sources = [(FeatureReader(m), tokenizer) for m in manifests]
        return TrainingData.from_config(sources, config, max_target_positions=limit, cache=True, name=name)

    discard_stale_checkpoints(Path(out_dir), model_dims, config, tokenizer)

    return train(
        model_dims,
        config,
        data(train_manifests, "train"),
        data(dev_manifests, "dev"),
        out_dir,
        init_checkpoint=init_checkpoint,
        progress=progress,
    )


def discard_stale_checkpoints(
    out_dir: Path, dims: ModelDimensions, config: TrainConfig, tokenizer: Tokenizer
) -> bool:
    """Remove checkpoints and history written with other settings; True if something was removed.

    The workflow reruns a training stage when one of its settings changes: the checkpoints
    of the old settings must then not be resumed. Settings that may change between
    resumptions (``max_steps``, checkpoint and logging intervals, device) do not count, so
    raising ``max_steps`` continues training where it stopped.
    """
    numbered = _numbered_checkpoints(out_dir)
    newest = out_dir / _CHECKPOINT_LAST
    if not newest.is_file():
        if not numbered:
            return False
        newest = numbered[-1][1]
    old = load_checkpoint(newest, "cpu")
    reasons = _config_differences(old.get("train_config") or {}, config)
    if old.get("dims") != dims.asdict():
        reasons.append("model dimensions")
    if (old.get("tokenizer") or {}).get("model") != tokenizer.path.read_bytes():
        reasons.append("tokenizer")
    if not reasons:
        return False
    log.warning(
        "%s: settings changed since its checkpoints were written (%s): starting over", out_dir, reasons
    )
    for path in [p for _, p in numbered] + [out_dir / _CHECKPOINT_LAST, out_dir / "history.tsv"]:
        path.unlink(missing_ok=True)
    return True


def average_last_checkpoints(stage_dir: str | Path, k: int, out_path: str | Path) -> Path:
    """Average the last ``k`` numbered checkpoints of a stage (``checkpoint_last.pt`` if none)."""
    numbered = [p for _, p in _numbered_checkpoints(Path(stage_dir))][-k:]
    if not numbered:
        numbered = [Path(stage_dir) / _CHECKPOINT_LAST]
    log.info("averaging %d checkpoint(s): %s", len(numbered), ", ".join(p.name for p in numbered))
    return average_checkpoints(numbered, out_path)
