"""Rule timestamps: word start/end times from every map, against the ground-truth word times."""

from caspes.analysis.timestamps import timestamps_to_file
from caspes.core.runlog import setup_rule_logging
from caspes.hf.loading import is_model_card, load_tokenizer_for

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
p, inp = snakemake.params, snakemake.input
tokenizer = (
    load_tokenizer_for(inp.tokenizer) if is_model_card(inp.tokenizer) else None
)  # ours: pieces as they are
timestamps_to_file(
    inp.xattn, inp.manifest, inp.smx, inp.smh, snakemake.output[0], p.pooling, p.ca_norm, p.sm_norm,
    p.subsampling, tokenizer,
)  # fmt: skip
