"""Rule claims_check: each claim of the paper tested on this study's per-utterance results
(claims.md, one line per claim; claims.csv, every test)."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.claims import write_claims

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
names = ("correlations", "deletion_curves", "deletion_hyps", "references", "timestamps")
write_claims(
    {k: list(snakemake.input[k]) for k in names if k in snakemake.input.keys()},
    snakemake.output.claims,
    snakemake.output.csv,
    snakemake.params.options,
)
