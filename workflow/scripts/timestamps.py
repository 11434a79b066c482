"""Rule timestamps: word start/end times from every map, against the ground-truth word times."""

import pandas as pd

from caspes.analysis.timestamps import evaluate_timestamps
from caspes.core.runlog import setup_rule_logging

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
p, inp = snakemake.params, snakemake.input
records = evaluate_timestamps(inp.xattn, inp.manifest, inp.smx, inp.smh, pooling=p.pooling, ca_norm=p.ca_norm,
                              sm_norm=p.sm_norm)  # fmt: skip
table = pd.DataFrame(records)
table.to_csv(snakemake.output[0], sep="\t", index=False, na_rep="nan")
if not table.empty:
    summary = table.groupby(["map", "method"])[["start_ms", "end_ms", "within_100"]].mean().round(1)
    log.info("mean over %d utterances:\n%s", table["utterance"].nunique(), summary.to_string())
