"""Rule import_manifest: a user's fairseq-S2T TSV manifest as one of our manifests."""

from caspes.core.runlog import setup_rule_logging
from caspes.data.manifests import import_manifest
from caspes.data.policy import UtterancePolicy

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p = snakemake.params

import_manifest(
    snakemake.input[0],
    snakemake.output.manifest,
    snakemake.output.skipped,
    UtterancePolicy(max_duration_s=p.max_duration_s, on_bad=p.on_bad),
    src_lang=snakemake.wildcards.lang,
    tgt_lang=p.tgt_lang,
)
