"""Rule import_europarl_st: one language pair and split of a raw EuroParl-ST release."""

from pathlib import Path

from caspes.core.runlog import setup_rule_logging
from caspes.data.europarl import EuroparlSplit, import_europarl_st
from caspes.data.policy import UtterancePolicy

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
p = snakemake.params

split = EuroparlSplit(Path(p.root), snakemake.wildcards.lang, p.tgt_lang, snakemake.wildcards.split)
log.info("importing %s", split.folder)
import_europarl_st(
    split,
    Path(snakemake.output.manifest),
    Path(snakemake.output.audio),
    UtterancePolicy(max_duration_s=p.max_duration_s, on_bad=p.on_bad),
    Path(snakemake.output.skipped),
    ffmpeg=p.ffmpeg,
)
