"""Rule synthesize_corpus: the embedded en/it corpus spoken by espeak-ng, with word times."""

from caspes.core.runlog import setup_rule_logging
from caspes.data.policy import UtterancePolicy
from caspes.data.synthetic.corpus import SyntheticCorpusConfig, synthesize_corpus

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
p = snakemake.params

config = SyntheticCorpusConfig(
    sizes=p.sizes,
    voices=p.voices,
    rates=p.rates,
    pitches=p.pitches,
    lexicon_fraction=p.lexicon_fraction,
    translation=p.translation,
    sample_rate=p.sample_rate,
    seed=p.seed,
)
log.info("synthetic corpus: %s", config)
synthesize_corpus(
    config,
    p.out_dir,
    UtterancePolicy(max_duration_s=p.max_duration_s, on_bad=p.on_bad),
    workers=snakemake.threads,
)
