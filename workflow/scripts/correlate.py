"""Rule correlate: Pearson r of cross-attention vs one saliency map, per utterance and (layer, head) set."""

import pandas as pd

from caspes.analysis.correlation import correlate_stores, summarise
from caspes.core.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
p = snakemake.params
records = correlate_stores(snakemake.input.xattn, snakemake.input.saliency, p.ca_norm, p.sm_norm)
table = pd.DataFrame(records, columns=["utterance", "pooling", "layer", "head", "r"])
table.to_csv(snakemake.output[0], sep="\t", index=False, na_rep="nan")
for row in summarise(records, ["pooling", "layer", "head"]):
    if row["head"] == "avg" or row["layer"] == "avg":
        log.info("%s", row)
undefined = int(table["r"].isna().sum())
if undefined:
    log.warning(
        "%d utterance-level correlations are undefined (constant map) and left out of means", undefined
    )
