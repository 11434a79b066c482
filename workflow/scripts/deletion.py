"""Rule deletion: deletion curve (beam search re-decoding) and its AUC for one explanation map."""

import torch

from caspes.core.runlog import setup_rule_logging
from caspes.explain.deletion import deletion_to_files

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
p = snakemake.params
deletion_to_files(
    snakemake.wildcards.dmap,
    snakemake.input.checkpoint,
    snakemake.input.tokenizer,
    snakemake.input.manifest,
    snakemake.input.hyps,
    snakemake.input.maps,
    p.task,
    p.decoding,
    p.settings,
    p.max_utterances,
    snakemake.output.curve,
    snakemake.output.hyps,
    device=snakemake.config["explain"]["device"],  # not a param: a device change reruns nothing
)
