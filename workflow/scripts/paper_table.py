"""Rule paper_table: one of the paper's tables as CSV, Markdown and LaTeX."""

from pathlib import Path

from caspes.core.runlog import setup_rule_logging
from caspes.report.paper_tables import build_table
from caspes.report.results import Bootstrap
from caspes.report.tables import to_markdown, write_table

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
inputs = {name: list(files) for name, files in snakemake.input.items()}
boot = Bootstrap(**snakemake.params.bootstrap)
table = build_table(snakemake.wildcards.table, inputs, pooling=snakemake.params.pooling, boot=boot)
write_table(table, Path(snakemake.output.csv).with_suffix(""))
log.info("\n%s", to_markdown(table))
