"""Rule segment_spectrograms: SLIC segmentations (three levels) of the utterances to explain."""

from caspes.core.runlog import setup_rule_logging
from caspes.explain.segment import segment_manifest

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
segment_manifest(
    snakemake.input.manifest, snakemake.output[0], snakemake.params.options, snakemake.params.max_utterances
)
