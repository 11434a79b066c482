"""Rule paper_figure: Figure 2 (SM^X, SM^H and CA of one utterance), Figure 3 (per-token SM^X over
log frequency), Figure 4 (ASR/ST pairs per source language) or the word-timestamps bars."""

from caspes.core.runlog import setup_rule_logging
from caspes.report.paper_figures import make_figure

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p = snakemake.params
make_figure(
    snakemake.wildcards.figure,
    dict(snakemake.input.items()),
    snakemake.output.png,
    utterance=p.utterance,
    pooling=p.pooling,
    bootstrap=p.bootstrap,
    factor=p.subsampling,
)
