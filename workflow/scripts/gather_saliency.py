"""Rule gather_saliency: one saliency store (and one timing table) from the shards of a split."""

import pandas as pd

from caspes.core.runlog import setup_rule_logging
from caspes.explain.shards import gather_shards

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
n = gather_shards(list(snakemake.input.stores), snakemake.output.store)
timing = pd.concat([pd.read_csv(p, sep="\t") for p in snakemake.input.timings], ignore_index=True)
timing.to_csv(snakemake.output.timing, sep="\t", index=False)
log.info("%d utterances from %d shards; %.2f s per utterance", n, len(timing),
         timing["seconds"].sum() / max(n, 1))  # fmt: skip
