"""Rule gather_saliency: one saliency store (and one timing table) from the shards of a split."""

from caspes.core.runlog import setup_rule_logging
from caspes.explain.shards import gather_shards_to_files

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
gather_shards_to_files(
    snakemake.input.stores, snakemake.input.timings, snakemake.output.store, snakemake.output.timing
)
