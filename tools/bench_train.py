"""Benchmark of one training step of the workflow's models on this machine's CPU (or GPU).

For each model of a workflow config, it builds the model from the config's ``dims`` and the
training batches of its first stage from the feature manifests the workflow wrote
(``results/data/<corpus>/<lang>/train.fbank.tsv``, so run the data stage first), then times
``--steps`` training steps after ``--warmup`` untimed ones: batch collation with SpecAugment,
forward, loss, backward, gradient clipping + AdamW (the features are read from disk once before). With ``--dropout`` it repeats the measurement
with other dropout values in the same run and prints the time ratios; with ``--bf16`` each variant is
also timed under bf16 autocast of the forward pass (as ``train_model`` does with bf16 on a GPU), ratio
to fp32, and under bf16 autocast with the attention products in float32
(``caspes.model.attention.fp32_attention``: precision ``bf16/attn32``);
with ``--depthwise-baseline`` each variant is also timed with oneDNN's depthwise convolution
(``F.conv1d``) in place of the Conformer's banded-matmul one (``caspes.model.conformer.depthwise_conv1d``).

The figures are wall-clock seconds on this process's threads (``--threads``, default 1 like the
workflow's ``train_model`` jobs); run it alone. It prints the allocator in use (``make run`` uses
glibc's; README "Allocator": jemalloc with page decay off grows without bound in long training).

Examples:
  python tools/bench_train.py --models small --dropout 0.1
  python tools/bench_train.py --configfile config.yaml --models base small large --steps 20
  python tools/bench_train.py --models base --bf16 --threads 2
  python tools/bench_train.py --models base small large --steps 10 --warmup 3 --depthwise-baseline
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from caspes.features import FeatureReader
from caspes.model import ModelDimensions, S2TModel
from caspes.model.attention import fp32_attention
from caspes.model.conformer import DEPTHWISE_BLOCK, depthwise_block
from caspes.model.inference import autocast_bf16, resolve_device
from caspes.tokenizer import Tokenizer
from caspes.train.augment import spec_augment
from caspes.train.config import TrainConfig
from caspes.train.data import TrainingData
from caspes.train.losses import compute_losses

PHASES = ("collate", "forward", "loss", "backward", "optimizer")


def load_config(path: Path) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


def training_data(
    config: dict[str, Any], model: str, results: Path
) -> tuple[TrainingData, TrainConfig, Tokenizer]:
    """The first training stage's batches of ``model`` from the workflow's feature manifests."""
    spec = config["models"][model]
    stage = next(iter(spec["stages"]))
    settings = {
        **config.get("training", {}),
        **spec["stages"][stage],
        "seed": config.get("seed", 1),
        "stage": stage,
    }
    train_config = TrainConfig.from_dict(settings)
    corpus = config["data"]["corpus"]
    tokenizer_path = results / "data" / corpus / "tokenizer" / f"{spec['tokenizer']}.model"
    manifests = [results / "data" / corpus / lang / "train.fbank.tsv" for lang in spec["languages"]]
    missing = [str(p) for p in [tokenizer_path, *manifests] if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run `snakemake --cores 2 data` first")
    tokenizer = Tokenizer(tokenizer_path)
    sources = [(FeatureReader(m), tokenizer) for m in manifests]
    data = TrainingData.from_config(sources, train_config, cache=True, name=f"{model} train")
    return data, train_config, tokenizer


def time_steps(
    dims: ModelDimensions,
    data: TrainingData,
    config: TrainConfig,
    device: torch.device,
    warmup: int,
    steps: int,
    bf16: bool = False,
    attn32: bool = False,
) -> tuple[dict[str, float], float, int]:
    """Seconds per step by phase, utterances per step, parameter count."""
    torch.manual_seed(config.seed)
    model = S2TModel(dims).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.peak_lr, betas=config.betas)
    order = data.epoch_batches(1)
    st_draws = data.st_choices(1, config.effective_st_probability)
    if warmup + steps > len(order):
        raise SystemExit(
            f"--warmup + --steps = {warmup + steps} exceeds the {len(order)} batches of an epoch"
        )
    for i in range(warmup + steps):  # read the features once, so that no variant pays the disk reads
        data.collate(order[i], st_draws[order[i]])
    totals = dict.fromkeys(PHASES, 0.0)
    utterances = 0

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for i in range(warmup + steps):
        marks = [time.perf_counter()]
        batch = data.collate(order[i], st_draws[order[i]])
        batch.features = spec_augment(
            batch.features, batch.lengths, config, np.random.default_rng([config.seed, i])
        )
        batch = batch.to(device)
        sync()
        marks.append(time.perf_counter())
        with autocast_bf16(device, bf16), fp32_attention(attn32):
            output = model(batch.features, batch.lengths, batch.decoder_input)
        sync()
        marks.append(time.perf_counter())
        loss = compute_losses(output, batch, config)["loss"]
        sync()
        marks.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        optimizer.step()
        sync()
        marks.append(time.perf_counter())
        if i >= warmup:
            utterances += len(batch)
            for phase, start, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
                totals[phase] += end - start
    return {k: v / steps for k, v in totals.items()}, utterances / steps, model.num_parameters()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configfile", type=Path, default=Path("config.yaml"))
    parser.add_argument("--results", type=Path, default=Path("results"), help="the workflow's results folder")
    parser.add_argument("--models", nargs="+", help="models of the config (default: all)")
    parser.add_argument("--dropout", type=float, nargs="*", default=[], help="also time these dropout values")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also time bf16 autocast of the forward pass, with bf16 and with float32 attention products",
    )
    parser.add_argument(
        "--depthwise-baseline",
        action="store_true",
        help="also time each variant with oneDNN's depthwise convolution (F.conv1d) instead of the banded matmuls",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = load_config(args.configfile)
    models = args.models or list(config["models"])
    unknown = sorted(set(models) - set(config["models"]))
    if unknown:
        raise SystemExit(f"{args.configfile}: no models {unknown} (models: {list(config['models'])})")
    preload = os.environ.get("LD_PRELOAD", "")
    print(
        f"# {args.configfile}, device {device}, {args.threads} thread(s), "
        f"{'jemalloc' if 'jemalloc' in preload else 'default allocator'}"
        f"{' (MALLOC_CONF ' + os.environ['MALLOC_CONF'] + ')' if os.environ.get('MALLOC_CONF') else ''}; "
        f"{args.warmup} untimed + {args.steps} timed steps (first stage's batches, epoch 1)"
    )
    header = [
        "model",
        "dropout",
        "precision",
        "depthwise",
        "params",
        "utt/step",
        *[f"{p} ms" for p in PHASES],
        "s/step",
        "utt/s",
        "ratio",
    ]
    print("\t".join(header))
    for name in models:
        data, train_config, tokenizer = training_data(config, name, args.results)
        base_dims = {**config["models"][name]["dims"], "vocab_size": len(tokenizer)}
        configured = ModelDimensions.from_dict(base_dims).dropout
        reference = None
        blocks = [DEPTHWISE_BLOCK, 0] if args.depthwise_baseline else [DEPTHWISE_BLOCK]
        precisions = ["fp32", "bf16", "bf16/attn32"] if args.bf16 else ["fp32"]
        variants = [(d, pr, blk) for d in [configured, *[d for d in args.dropout if d != configured]]
                    for pr in precisions for blk in blocks]  # fmt: skip
        for dropout, precision, block in variants:
            dims = ModelDimensions.from_dict({**base_dims, "dropout": dropout})
            with depthwise_block(block):
                phases, utt_per_step, params = time_steps(
                    dims,
                    data,
                    train_config,
                    device,
                    args.warmup,
                    args.steps,
                    bf16=precision != "fp32",
                    attn32=precision == "bf16/attn32",
                )
            per_step = sum(phases.values())
            reference = reference or per_step
            kernel = f"banded/{block}" if block else "conv1d"
            row = [name, f"{dropout:g}", precision, kernel]
            row += [str(params), f"{utt_per_step:.1f}"]
            row += [f"{1000 * phases[p]:.1f}" for p in PHASES]
            row += [f"{per_step:.3f}", f"{utt_per_step / per_step:.1f}", f"{per_step / reference:.3f}"]
            print("\t".join(row), flush=True)


if __name__ == "__main__":
    main()
