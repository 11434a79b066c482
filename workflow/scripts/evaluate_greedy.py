"""Rule evaluate_greedy: greedy dev-set WER (ASR) and BLEU/chrF (ST) of a trained model."""

import torch

from caspes.core.runlog import setup_rule_logging
from caspes.decode.run import evaluate_greedy_to_files

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
evaluate_greedy_to_files(
    snakemake.input.checkpoint,
    snakemake.input.tokenizer,
    dict(zip(snakemake.params.langs, snakemake.input.manifests, strict=True)),
    snakemake.params.tasks,
    snakemake.output.quality,
    snakemake.output.hyps,
)
