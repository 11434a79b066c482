"""Rule size: the size (compactness) metric of one saliency store (per-token normalised maps)."""

import pandas as pd

from caspes.core.runlog import setup_rule_logging
from caspes.explain.maps import normalize_per_token
from caspes.explain.size import size_curve
from caspes.explain.stores import SaliencyStore

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
with SaliencyStore(snakemake.input[0]) as store:
    maps = [normalize_per_token(store[uid].saliency) for uid in store.ids]
taus, percents, area = size_curve(maps)
table = pd.DataFrame({"threshold": taus, "percent_above": percents})
table["auc"] = round(area, 4)
table["utterances"] = len(maps)
table.to_csv(snakemake.output[0], sep="\t", index=False)
log.info("size AUC = %.2f over %d utterances", area, len(maps))
