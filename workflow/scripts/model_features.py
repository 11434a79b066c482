"""Rule model_features: a split's audio through a Hugging Face model's own feature extractor."""

import torch

from caspes.core.runlog import setup_rule_logging
from caspes.hf.features import extract_model_features

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
extract_model_features(
    snakemake.input.card, snakemake.input.manifest, snakemake.output.archive, snakemake.output.manifest
)
