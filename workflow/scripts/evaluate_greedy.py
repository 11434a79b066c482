"""Rule evaluate_greedy: greedy dev-set WER (ASR) and BLEU/chrF (ST) of a trained model."""

import pandas as pd
import torch

from caspes.core.runlog import setup_rule_logging
from caspes.decode.run import evaluate_greedy

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)

quality, hyps = evaluate_greedy(
    snakemake.input.checkpoint,
    snakemake.input.tokenizer,
    dict(zip(snakemake.params.langs, snakemake.input.manifests, strict=True)),
    snakemake.params.tasks,
)
pd.DataFrame(quality).to_csv(snakemake.output.quality, sep="\t", index=False)
pd.DataFrame(hyps).to_csv(snakemake.output.hyps, sep="\t", index=False)
log.info("greedy dev quality:\n%s", pd.DataFrame(quality).to_string(index=False))
