"""Rule quality_table: every model's WER / BLEU / chrF per direction and split in one table."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.summaries import quality_table

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
quality_table(snakemake.input, snakemake.output[0])
