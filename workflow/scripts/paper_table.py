"""Rule paper_table: one of the paper's tables as CSV, Markdown and LaTeX."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.paper_tables import write_paper_table

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
write_paper_table(
    snakemake.wildcards.table,
    dict(snakemake.input.items()),
    snakemake.output.csv,
    pooling=snakemake.params.pooling,
    bootstrap=snakemake.params.bootstrap,
)
