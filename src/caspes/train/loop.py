"""The training loop: set-up or resumption, optimizer steps, periodic dev loss, progress
lines and checkpoints; the workflow's entry point for one training stage."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from caspes import __version__
from caspes.features import FeatureReader
from caspes.model import ModelDimensions, S2TModel
from caspes.model.attention import fp32_attention
from caspes.model.checkpoint import load_checkpoint
from caspes.model.inference import autocast_bf16, resolve_bf16, resolve_device
from caspes.tokenizer import Tokenizer
from caspes.train.augment import spec_augment
from caspes.train.checkpoints import (
    CHECKPOINT_LAST,
    discard_stale_checkpoints,
    link_or_copy,
    newest_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from caspes.train.compat import check_compatible, config_differences, same_dims_but_dropout
from caspes.train.config import TrainConfig
from caspes.train.data import TrainingData
from caspes.train.history import HISTORY_FILE, History
from caspes.train.losses import compute_losses, count_unalignable, evaluate_loss
from caspes.train.schedule import make_scheduler

__all__ = ["train", "train_stage"]

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """One training run: its inputs, model and optimizer, position and counters."""

    dims: ModelDimensions
    config: TrainConfig
    data: TrainingData
    dev_data: TrainingData | None
    out_dir: Path
    device: torch.device
    use_bf16: bool
    st_probability: float
    model: S2TModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    # Saved in every checkpoint and restored on resumption.
    step: int = 0
    epoch: int = 1
    batch_in_epoch: int = 0
    wall_offset: float = 0.0
    unalignable: int = 0
    history_rows: int | None = None
    # Set when the loop starts.
    history: History = field(init=False)
    t_start: float = 0.0
    t_log: float = 0.0
    steps_since_log: int = 0
    order: list[list[int]] = field(default_factory=list)
    st_draws: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def last_path(self) -> Path:
        return self.out_dir / CHECKPOINT_LAST

    def wall_s(self) -> float:
        """Seconds of training, those of the runs before this resumption included."""
        return self.wall_offset + (time.monotonic() - self.t_start)


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
    """:func:`train` in ``torch``'s thread setting: checks, set-up or resumption, the loop."""
    device = resolve_device(config.device)
    if device.type == "cuda":
        use_bf16 = config.bf16
    else:
        use_bf16 = device.type == "cpu" and resolve_bf16(config.cpu_bf16, device)
    st_probability = _check_data(dims, config, data, dev_data)
    resume_path, resume = _load_resume(out_dir, dims, config, data)
    if resume is not None and resume["step"] >= config.max_steps:
        return _nothing_to_do(resume_path, resume["step"], config.max_steps, out_dir / CHECKPOINT_LAST)
    init = init_checkpoint if resume is None else None
    model, optimizer, scheduler = _build(dims, config, data, device, init)
    run = _Run(
        dims=dims,
        config=config,
        data=data,
        dev_data=dev_data,
        out_dir=out_dir,
        device=device,
        use_bf16=use_bf16,
        st_probability=st_probability,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
    )
    if resume is not None:
        _restore(run, resume, resume_path)
        del resume
    run.history = History(out_dir / HISTORY_FILE, run.history_rows)
    _log_start(run)
    _loop(run, progress, callback)
    _log_finish(run)
    return run.last_path


# =========================================================================== set-up and resumption
def _check_data(
    dims: ModelDimensions, config: TrainConfig, data: TrainingData, dev_data: TrainingData | None
) -> float:
    """Raise ValueError if the model cannot be trained on the data; returns the ST probability."""
    check_compatible(dims, data, data.name)
    if dev_data is not None:
        check_compatible(dims, dev_data, dev_data.name)
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
    return st_probability


def _load_resume(
    out_dir: Path, dims: ModelDimensions, config: TrainConfig, data: TrainingData
) -> tuple[Path, dict[str, Any] | None]:
    """The checkpoint to resume from (path, contents; None if there is none), checked
    against the requested dims and tokenizer; warns about changed settings."""
    resume_path = newest_checkpoint(out_dir) or out_dir / CHECKPOINT_LAST
    if not resume_path.is_file():
        return resume_path, None
    resume = load_checkpoint(resume_path, "cpu")
    if resume["dims"] != dims.asdict():
        raise ValueError(
            f"{resume_path}: model dimensions differ from the requested ones; use another out_dir"
        )
    if resume.get("tokenizer", {}).get("model") != data.tokenizer_bytes:
        raise ValueError(f"{resume_path}: was trained with another tokenizer than {data.tokenizer.path}")
    diffs = config_differences(resume.get("train_config") or {}, config)
    if diffs:
        log.warning("%s: training config differs from the checkpoint's in %s", resume_path, diffs)
    return resume_path, resume


def _nothing_to_do(resume_path: Path, step: int, max_steps: int, last_path: Path) -> Path:
    """The run is already at ``max_steps``: make sure ``checkpoint_last.pt`` exists, return it."""
    log.info("%s: already at step %d (max_steps=%d), nothing to do", resume_path, step, max_steps)
    if resume_path != last_path:
        link_or_copy(resume_path, last_path)
    return last_path


def _build(
    dims: ModelDimensions,
    config: TrainConfig,
    data: TrainingData,
    device: torch.device,
    init_checkpoint: str | Path | None,
) -> tuple[S2TModel, torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Model (weights of ``init_checkpoint`` if given), optimizer and scheduler: a
    deterministic construction from the seed."""
    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    model = S2TModel(dims)
    if init_checkpoint is not None:
        _load_init_weights(model, init_checkpoint, dims, data)
    model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.peak_lr,
        betas=config.betas,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    return model, optimizer, make_scheduler(optimizer, config)


def _load_init_weights(
    model: S2TModel, init_checkpoint: str | Path, dims: ModelDimensions, data: TrainingData
) -> None:
    init = load_checkpoint(init_checkpoint, "cpu")
    if not same_dims_but_dropout(init["dims"], dims.asdict()):
        raise ValueError(f"{init_checkpoint}: model dimensions differ from the requested ones")
    init_tok = (init.get("tokenizer") or {}).get("model")
    if init_tok is not None and init_tok != data.tokenizer_bytes:
        raise ValueError(f"{init_checkpoint}: was trained with another tokenizer than {data.tokenizer.path}")
    model.load_state_dict(init["model"])
    log.info("initialised model weights from %s (step %s)", init_checkpoint, init.get("step"))


def _restore(run: _Run, resume: dict[str, Any], resume_path: Path) -> None:
    """Model, optimizer, scheduler, position, counters and RNG states from ``resume``."""
    run.model.load_state_dict(resume["model"])
    run.optimizer.load_state_dict(resume["optimizer"])
    run.scheduler.load_state_dict(resume["scheduler"])
    run.step, run.epoch = int(resume["step"]), int(resume["epoch"])
    run.batch_in_epoch = int(resume["batch_in_epoch"])
    run.wall_offset = float(resume.get("wall_s", 0.0))
    run.unalignable = int(resume.get("ctc_unalignable_seen", 0))
    run.history_rows = int(resume["history_rows"])
    set_rng_state(resume["rng"])
    log.info(
        "resuming from step %d (epoch %d, batch %d) of %s",
        run.step,
        run.epoch,
        run.batch_in_epoch,
        resume_path,
    )


def _skip_summary(data: TrainingData) -> str:
    return ", ".join(f"{r} {n}" for r, n in sorted(data.skipped.items())) or "none"


def _log_start(run: _Run) -> None:
    dims, config, data, dev_data = run.dims, run.config, run.data, run.dev_data
    log.info(
        "training %s model: %d parameters, stage %s (st_probability %.2f), %d steps, device %s%s",
        "x".join(map(str, (dims.d_model, dims.encoder_layers, dims.decoder_layers))),
        run.model.num_parameters(),
        config.stage,
        run.st_probability,
        config.max_steps,
        run.device,
        (
            ""
            if not run.use_bf16
            else " (bf16)"
            if run.device.type == "cuda"
            else " (bf16, attention in float32)"
        ),
    )
    log.info(
        "%s: %d utterances, %d batches per epoch; skipped %d (%s)",
        data.name,
        len(data),
        len(data.batches),
        len(data.skips),
        _skip_summary(data),
    )
    if dev_data is not None:
        log.info(
            "%s: %d utterances, %d batches; skipped %d (%s)",
            dev_data.name,
            len(dev_data),
            len(dev_data.batches),
            len(dev_data.skips),
            _skip_summary(dev_data),
        )


def _log_finish(run: _Run) -> None:
    if run.unalignable:
        log.warning(
            "%d training samples had a CTC target longer than their encoder output (loss zeroed)",
            run.unalignable,
        )
    log.info("finished at step %d (epoch %d): %s", run.step, run.epoch, run.last_path)


# =========================================================================== the loop
def _loop(run: _Run, progress: bool, callback: Callable[[int, dict[str, float]], None] | None) -> None:
    """Steps from the current position to ``max_steps``; closes the history at the end."""
    config = run.config
    run.t_start = time.monotonic()
    run.t_log, run.steps_since_log = run.t_start, 0
    run.st_draws = run.data.st_choices(run.epoch, run.st_probability)
    run.order = run.data.epoch_batches(run.epoch)
    bar = tqdm(total=config.max_steps, initial=run.step, disable=not progress, desc="train", mininterval=2)
    try:
        while run.step < config.max_steps:
            values, lr = _train_step(run, _next_batch(run))
            _record(run, values)
            bar.update(1)
            _log_progress(run, values, lr)
            numbered = config.checkpoint_every > 0 and run.step % config.checkpoint_every == 0
            if numbered or run.step == config.max_steps:
                _checkpoint(run, numbered)
            if callback is not None:
                callback(run.step, {k: v for k, v in values.items() if v is not None})
        if not run.last_path.is_file():  # max_steps == 0 on a fresh run: save the initial model
            _checkpoint(run, False)
    finally:
        bar.close()
        run.history.close()


def _next_batch(run: _Run) -> list[int]:
    """Advance the position by one batch (to the next epoch at the end of one); returns the
    utterance indices of that batch."""
    if run.batch_in_epoch >= len(run.order):
        run.epoch, run.batch_in_epoch = run.epoch + 1, 0
        run.order = run.data.epoch_batches(run.epoch)
        run.st_draws = run.data.st_choices(run.epoch, run.st_probability)
    indices = run.order[run.batch_in_epoch]
    run.batch_in_epoch += 1
    run.step += 1
    return indices


def _train_step(run: _Run, indices: list[int]) -> tuple[dict[str, Any], float]:
    """One optimizer update on the batch ``indices``; returns the history values (without
    ``dev_loss`` and ``wall_s``) and the learning rate of that update."""
    config, model, optimizer = run.config, run.model, run.optimizer
    batch = run.data.collate(indices, run.st_draws[indices])
    if config.specaugment:
        batch.features = spec_augment(
            batch.features, batch.lengths, config, np.random.default_rng([config.seed, run.step, 2])
        )
    batch = batch.to(run.device)
    lr = optimizer.param_groups[0]["lr"]
    with autocast_bf16(run.device, run.use_bf16), fp32_attention(run.use_bf16 and run.device.type == "cpu"):
        output = model(batch.features, batch.lengths, batch.decoder_input)
    parts = compute_losses(output, batch, config)
    loss = parts["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {run.step}: non-finite loss {float(loss)} (batch {batch.ids[:3]}...)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
    optimizer.step()
    run.scheduler.step()
    run.unalignable += count_unalignable(
        batch,
        output.encoder_lengths,
        config,
        output.ctc_src_log_probs is not None,
        output.ctc_tgt_log_probs is not None,
    )
    values: dict[str, Any] = {
        "step": run.step,
        "epoch": run.epoch,
        "lr": float(lr),
        "loss": loss.item(),
        "ce": parts["ce"].item(),
        "ctc_src": parts["ctc_src"].item(),
        "ctc_tgt": parts["ctc_tgt"].item(),
        "dev_loss": None,
    }
    return values, lr


def _record(run: _Run, values: dict[str, Any]) -> None:
    """Add the dev loss (every ``dev_every`` steps) and ``wall_s`` to ``values``; write the
    history row."""
    config = run.config
    if run.dev_data is not None and config.dev_every > 0 and run.step % config.dev_every == 0:
        values["dev_loss"] = evaluate_loss(run.model, run.dev_data, config.stage, run.device, run.use_bf16)
        log.info("step %d: dev loss %.4f", run.step, values["dev_loss"])
    values["wall_s"] = round(run.wall_s(), 3)
    run.history.write(values)


def _log_progress(run: _Run, values: dict[str, Any], lr: float) -> None:
    """The progress line, every ``log_every`` steps."""
    run.steps_since_log += 1
    if run.config.log_every > 0 and run.step % run.config.log_every == 0:
        now = time.monotonic()
        log.info(
            "step %d epoch %d: loss %.4f (ce %.4f, ctc_src %.4f, ctc_tgt %.4f) lr %.3g, %.2f steps/s%s",
            run.step,
            run.epoch,
            values["loss"],
            values["ce"],
            values["ctc_src"],
            values["ctc_tgt"],
            lr,
            run.steps_since_log / max(now - run.t_log, 1e-9),
            f", {run.unalignable} CTC-unalignable samples so far" if run.unalignable else "",
        )
        run.t_log, run.steps_since_log = now, 0


def _checkpoint(run: _Run, numbered: bool) -> None:
    """Sync the history, then save everything a resumption needs (``checkpoint_<step>.pt``
    and its link ``checkpoint_last.pt`` if ``numbered``, else ``checkpoint_last.pt``)."""
    run.history.sync()
    data = run.data
    ckpt = {
        "dims": run.dims.asdict(),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "step": run.step,
        "epoch": run.epoch,
        "batch_in_epoch": run.batch_in_epoch,
        "rng": rng_state(),
        "train_config": run.config.asdict(),
        "tokenizer": {"path": str(data.tokenizer.path), "model": data.tokenizer_bytes},
        "caspes_version": __version__,
        "history_rows": run.history.rows,
        "wall_s": run.wall_s(),
        "ctc_unalignable_seen": run.unalignable,
    }
    write_checkpoint(run.out_dir, ckpt, run.step if numbered else None, run.config.keep_last)


# =========================================================================== workflow entry point
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
