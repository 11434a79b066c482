"""Rule claims_check: each claim of the paper, the paper's figure, ours, and whether it holds; the
paired bootstrap tests behind the comparisons."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.claims import write_claims

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p = snakemake.params
write_claims(
    snakemake.input.tables,
    snakemake.input.correlations,
    snakemake.output.claims,
    snakemake.output.tests,
    p.p_h,
    p.pooling,
    p.bootstrap,
)
