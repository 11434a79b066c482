"""The embedded en/it corpus: a grammar with its lexicon, spoken by espeak-ng with word times."""
