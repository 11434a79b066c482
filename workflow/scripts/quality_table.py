"""Rule quality_table: every model's WER / BLEU / chrF per direction and split in one table."""

import pandas as pd

from caspes.core.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])

table = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input], ignore_index=True)
table.to_csv(snakemake.output[0], sep="\t", index=False)
log.info("quality:\n%s", table.to_string(index=False))
