"""Rule segment_spectrograms: SLIC segmentations (three levels) of the utterances to explain."""

from caspes.core.runlog import setup_rule_logging
from caspes.explain.segment import SegmentationOptions, write_segmentations
from caspes.explain.shards import select_ids
from caspes.features import FeatureReader

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
o = snakemake.params.options
options = SegmentationOptions(
    base_segments=tuple(o["base_segments"]),
    threshold_frames=o["threshold_frames"],
    reference_frames=o["reference_frames"],
    compactness=o["compactness"],
    sigma=o["sigma"],
)
reader = FeatureReader(snakemake.input.manifest)  # utterance CMVN applied on load, as decoded
ids = select_ids([r["id"] for r in reader.rows], snakemake.params.max_utterances)
log.info("segmenting %d of %d utterances with %s", len(ids), len(reader), options)
summary = write_segmentations(
    snakemake.output[0], ((uid, reader[uid]) for uid in ids), options, progress=True, total=len(ids)
)
log.info("done: %s", summary)
