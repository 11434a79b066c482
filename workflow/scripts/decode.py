"""Rule decode: beam search, cross-attention dump and quality of one model, direction and split."""

import pandas as pd
import torch

from caspes.core.runlog import setup_rule_logging
from caspes.decode.options import DecodingOptions
from caspes.decode.run import decode_split

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
opts = dict(snakemake.params.options)
batch_frames = opts.pop("batch_frames")
opts.pop("splits")  # which splits are decoded is the workflow's business
comet_checkpoint = opts.pop("comet_checkpoint")
device = opts.pop("device")

quality = decode_split(
    snakemake.input.checkpoint,
    snakemake.input.tokenizer,
    snakemake.input.manifest,
    snakemake.params.task,
    DecodingOptions(**opts),
    snakemake.output.hyps,
    snakemake.output.xattn,
    batch_frames=batch_frames,
    comet_checkpoint=comet_checkpoint,
    device=device,
)
row = {"model": snakemake.wildcards.model, "split": snakemake.wildcards.split, **quality}
pd.DataFrame([row]).to_csv(snakemake.output.quality, sep="\t", index=False)
