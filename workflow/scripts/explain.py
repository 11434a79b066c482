"""Rules explain_input / explain_encoder: SM^X or SM^H of one shard of a decoded split."""

import torch

from caspes.core.allocator import retain_freed_memory
from caspes.core.runlog import setup_rule_logging
from caspes.explain.shards import explain_shard_to_files

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
log.info(retain_freed_memory(snakemake.config["explain"]["retain_freed_memory"]))  # read at run time
torch.set_num_threads(snakemake.threads)
explain_shard_to_files(
    snakemake.params.kind,
    snakemake.input.checkpoint,
    snakemake.input.manifest,
    snakemake.input.xattn,
    snakemake.output.store,
    snakemake.output.timing,
    snakemake.params.options,
    snakemake.wildcards.scatteritem,
    max_utterances=snakemake.params.max_utterances,
    segments_path=snakemake.input.get("segments"),
    device=snakemake.config["explain"]["device"],  # not a param: a device change reruns nothing
)
