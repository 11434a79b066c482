"""Rule corpus_stats: utterances, hours, vocabulary and mean duration per language and split."""

from caspes.core.runlog import setup_rule_logging
from caspes.data.manifests import corpus_statistics_to_file

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
keys = [tuple(k) for k in snakemake.params.pairs]
corpus_statistics_to_file(
    dict(zip(keys, snakemake.input.manifests)), dict(zip(keys, snakemake.input.skipped)), snakemake.output[0]
)
