"""Rule train_tokenizer: SentencePiece unigram on the train texts of one language set."""

from caspes.core.runlog import setup_rule_logging
from caspes.tokenizer import train_tokenizer_from_manifests

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p = snakemake.params
train_tokenizer_from_manifests(
    snakemake.input, snakemake.output.model, p.languages, p.vocab_size, p.character_coverage, p.seed
)
