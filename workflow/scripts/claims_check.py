"""Rule claims_check: each claim of the paper, the paper's figure, ours, and whether it holds."""

from pathlib import Path

from caspes.paper import claims_check, claims_markdown
from caspes.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
paths = {Path(p).stem: p for p in snakemake.input}
text = claims_markdown(claims_check(paths, snakemake.params.p_h))
Path(snakemake.output[0]).write_text(text, encoding="utf-8")
log.info("\n%s", text)
