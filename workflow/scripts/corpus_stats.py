"""Rule corpus_stats: utterances, hours, vocabulary and mean duration per language and split."""

import pandas as pd

from caspes.core.runlog import setup_rule_logging
from caspes.data.manifests import STATS_COLUMNS, corpus_statistics

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])

keys = [tuple(k) for k in snakemake.params.pairs]
stats = corpus_statistics(
    dict(zip(keys, snakemake.input.manifests)), dict(zip(keys, snakemake.input.skipped))
)
table = pd.DataFrame(stats, columns=list(STATS_COLUMNS))
table.to_csv(snakemake.output[0], sep="\t", index=False)
log.info("corpus statistics:\n%s", table.to_string(index=False))
