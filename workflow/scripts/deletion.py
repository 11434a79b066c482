"""Rule deletion: deletion curve (beam search re-decoding) and its AUC for one explanation map."""

import pandas as pd
import torch

from caspes.core.runlog import setup_rule_logging
from caspes.decode.options import DecodingOptions
from caspes.explain.deletion import deletion_curve, deletion_map_spec, deletion_orders
from caspes.explain.shards import select_ids
from caspes.features import FeatureReader
from caspes.model.checkpoint import load_model
from caspes.model.inference import resolve_device
from caspes.tokenizer import Tokenizer

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
p = snakemake.params
dec = {
    k: v for k, v in p.decoding.items() if k not in ("splits", "batch_frames", "comet_checkpoint", "device")
}
model, _ = load_model(snakemake.input.checkpoint, resolve_device(p.device))
reader = FeatureReader(snakemake.input.manifest)
frames = {r["id"]: int(r["n_frames"]) for r in reader.rows}
hyps = pd.read_csv(snakemake.input.hyps, sep="\t", dtype=str, keep_default_na=False, quoting=3)
ids = select_ids(list(hyps["id"]), p.max_utterances)  # the explained utterances, in manifest order
orders = deletion_orders(snakemake.wildcards.dmap, snakemake.input.maps, frames, ids)
rows = [r for r in hyps.to_dict("records") if r["id"] in orders]
res = deletion_curve(
    model, Tokenizer(snakemake.input.tokenizer), reader, rows, orders, deletion_map_spec(snakemake.wildcards.dmap)[1], p.task,
    DecodingOptions(**dec), p.settings["step_percent"], p.settings["batch_frames"], progress=True,
)  # fmt: skip
curve = pd.DataFrame({"percent": res.percents, "score": res.scores})
curve.insert(0, "metric", res.metric)
curve.insert(0, "unit", res.unit)
curve["auc"] = round(res.auc, 4)
curve["utterances"] = len(rows)
curve.to_csv(snakemake.output.curve, sep="\t", index=False)
pd.DataFrame(res.hypotheses).to_csv(snakemake.output.hyps, sep="\t", index=False)
log.info("%s deletion AUC (%s) = %.2f over %d utterances", res.unit, res.metric, res.auc, len(rows))
