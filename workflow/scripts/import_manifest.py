"""Rule import_manifest: a user's fairseq-S2T TSV manifest as one of our manifests."""

from caspes.data import UtterancePolicy, import_manifest
from caspes.runlog import setup_rule_logging

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
