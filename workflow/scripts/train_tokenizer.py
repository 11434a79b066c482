"""Rule train_tokenizer: SentencePiece unigram on the train texts of one language set."""

from caspes.core.runlog import setup_rule_logging
from caspes.tokenizer import collect_texts, train_tokenizer

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p = snakemake.params

texts = collect_texts(snakemake.input, p.languages)
train_tokenizer(
    texts,
    snakemake.output.model,
    p.languages,
    p.vocab_size,
    character_coverage=p.character_coverage,
    seed=p.seed,
)
