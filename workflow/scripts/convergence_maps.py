"""Rule convergence_maps: r(CA, SM) and map reliability of SM^X and SM^H as the mask budget grows."""

import torch

from caspes.analysis.convergence import convergence_to_file
from caspes.core.allocator import retain_freed_memory
from caspes.core.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
log.info(retain_freed_memory(snakemake.config["explain"]["retain_freed_memory"]))  # read at run time
torch.set_num_threads(snakemake.threads)
convergence_to_file(
    snakemake.output[0],
    checkpoint=snakemake.input.checkpoint,
    manifest=snakemake.input.manifest,
    xattn_path=snakemake.input.xattn,
    segments_path=snakemake.input.segments,
    device=snakemake.config["explain"]["device"],  # not a param: a device change reruns nothing
    **snakemake.params.settings,
)
