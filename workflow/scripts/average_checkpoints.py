"""Rule average_checkpoints: the final model = mean of the last k checkpoints of its last stage."""

from caspes.core.runlog import setup_rule_logging
from caspes.train.checkpoints import average_last_checkpoints

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])

average_last_checkpoints(snakemake.params.stage_dir, snakemake.params.k, snakemake.output[0])
