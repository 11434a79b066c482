"""Rule extract_fbank: 80-dim Kaldi fbank of one split into one indexed archive."""

import torch

from caspes.core.runlog import setup_rule_logging
from caspes.features import FbankOptions, extract_split

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
setup_rule_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
p = snakemake.params

extract_split(
    snakemake.input.manifest,
    snakemake.output.archive,
    snakemake.output.manifest,
    FbankOptions(p.num_mel_bins, p.frame_length_ms, p.frame_shift_ms, p.sample_rate),
)
