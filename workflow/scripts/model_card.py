"""Rule model_card: the checked entry of a Hugging Face model and the sha256 of its folder's files."""

from caspes.core.runlog import setup_rule_logging
from caspes.hf.card import write_model_card

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
write_model_card(snakemake.params.card, snakemake.input, snakemake.output[0])
