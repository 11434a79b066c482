"""Rule convergence: the convergence table (CSV, Markdown, LaTeX) and figure (PNG, PDF)."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.convergence import write_convergence

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
write_convergence(snakemake.input[0], snakemake.output.csv, snakemake.params.bootstrap)
