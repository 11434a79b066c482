"""Rule explanation_table: deletion AUC, size AUC, map reliability and cost of every saliency store in one table."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.summaries import explanation_table

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
explanation_table(snakemake.input, snakemake.output[0], snakemake.params.pooling)
