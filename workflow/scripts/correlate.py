"""Rule correlate: Pearson r of cross-attention vs one saliency map, per utterance and (layer, head) set."""

from caspes.analysis.correlation import correlations_to_file
from caspes.core.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p = snakemake.params
correlations_to_file(
    snakemake.input.xattn, snakemake.input.saliency, snakemake.output[0], p.ca_norm, p.sm_norm, p.subsampling
)
