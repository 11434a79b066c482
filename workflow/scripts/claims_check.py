"""Rule claims_check: each claim of the paper, the paper's figure, ours, and whether it holds; the
paired bootstrap tests behind the comparisons."""

from pathlib import Path

import pandas as pd

from caspes.core.runlog import setup_rule_logging
from caspes.report.claims import claims_check, claims_markdown, paired_tests
from caspes.report.results import Bootstrap

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
p = snakemake.params
boot = Bootstrap(**p.bootstrap)
tests = paired_tests(snakemake.input.correlations, p.pooling, boot) if boot.resamples else []
pd.DataFrame(tests, columns=["run", "map", "comparison", "difference", "p"]).to_csv(
    snakemake.output.tests, index=False
)
paths = {Path(t).stem: t for t in snakemake.input.tables}
text = claims_markdown(claims_check(paths, p.p_h, tests))
Path(snakemake.output.claims).write_text(text, encoding="utf-8")
log.info("\n%s", text)
