"""Rule size: the size (compactness) metric of one saliency store (per-token normalised maps)."""

from caspes.core.runlog import setup_rule_logging
from caspes.explain.size import size_table

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
size_table(snakemake.input[0], snakemake.output[0])
