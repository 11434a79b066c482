"""Rule decode: beam search, cross-attention dump and quality of one model, direction and split."""

import torch

from caspes.core.runlog import setup_rule_logging
from caspes.decode.run import decode_split_to_files

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
decode_split_to_files(
    snakemake.input.checkpoint,
    snakemake.input.tokenizer,
    snakemake.input.manifest,
    snakemake.params.task,
    {**snakemake.params.options, "device": snakemake.config["decoding"]["device"]},  # device: not a param
    snakemake.output.hyps,
    snakemake.output.xattn,
    snakemake.output.quality,
    labels={"model": snakemake.wildcards.model, "split": snakemake.wildcards.split},
)
