"""Rules explain_input / explain_encoder: SM^X or SM^H of one shard of a decoded split."""

import pandas as pd
import torch

from caspes.core.runlog import setup_rule_logging
from caspes.explain.shards import explain_shard
from caspes.explain.spes import OcclusionOptions

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
index, count = (int(x) for x in snakemake.wildcards.scatteritem.split("-of-"))
summary = explain_shard(
    snakemake.params.kind,
    snakemake.input.checkpoint,
    snakemake.input.manifest,
    snakemake.input.xattn,
    snakemake.output.store,
    OcclusionOptions(**snakemake.params.options),
    shard=(index - 1, count),
    max_utterances=snakemake.params.max_utterances,
    segments_path=snakemake.input.get("segments"),
    device=snakemake.params.device,
)
summary["device"] = "cuda" if torch.cuda.is_available() and snakemake.params.device != "cpu" else "cpu"
pd.DataFrame([{"shard": snakemake.wildcards.scatteritem, **summary}]).to_csv(
    snakemake.output.timing, sep="\t", index=False
)
