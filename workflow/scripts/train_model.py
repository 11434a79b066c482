"""Rule train_model: one training stage of one model (resumes from its last checkpoint)."""

import torch

from caspes.core.runlog import setup_rule_logging
from caspes.train.config import split_runtime, stage_settings
from caspes.train.loop import train_stage

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
# Device, threads and logging are not params (changing them must not retrain): read at run time.
_, runtime = split_runtime(
    stage_settings(snakemake.config, snakemake.wildcards.model, snakemake.wildcards.stage)
)

train_stage(
    snakemake.input.train,
    snakemake.input.dev,
    snakemake.input.tokenizer,
    snakemake.params.dims,
    {**snakemake.params.settings, **runtime},
    snakemake.params.out_dir,
    init_checkpoint=snakemake.input.init[0] if snakemake.input.init else None,
)
