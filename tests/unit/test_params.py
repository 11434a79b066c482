"""Rule params carry only what changes a result (README "What reruns what"): the builders keep
every result-shaping field, with defaults filled in, and drop device, thread and logging keys."""

from __future__ import annotations

import pytest

from caspes.decode.options import DecodingOptions, decoding_result_settings, split_decoding_settings
from caspes.explain.segment import SegmentationOptions
from caspes.train.config import RUNTIME_FIELDS, TrainConfig, split_runtime, stage_settings

CONFIG = {
    "seed": 3,
    "training": {"max_frames_per_batch": 2000, "log_every": 5, "device": "cpu", "specaugment_policy": "lb"},
    "models": {"base": {"stages": {"asr": {"max_steps": 10, "log_every": 2, "peak_lr": 1e-3}}}},
}


def test_stage_settings_merge_training_stage_seed_and_stage():
    settings = stage_settings(CONFIG, "base", "asr")
    assert settings["max_frames_per_batch"] == 2000 and settings["max_steps"] == 10
    assert settings["log_every"] == 2  # the stage overrides the shared value
    assert (settings["seed"], settings["stage"]) == (3, "asr")


def test_split_runtime_keeps_result_fields_and_drops_runtime_ones():
    result, runtime = split_runtime(stage_settings(CONFIG, "base", "asr"))
    assert runtime == {"log_every": 2, "device": "cpu"}
    assert not set(RUNTIME_FIELDS) & set(result)
    assert result["max_steps"] == 10 and result["peak_lr"] == 1e-3 and result["seed"] == 3
    assert result["specaug_time_width"] == 100  # the lb policy, expanded
    assert result["label_smoothing"] == TrainConfig().label_smoothing  # defaults filled in
    # the runtime keys change nothing in the result part; a result key does
    other = {**CONFIG, "training": {**CONFIG["training"], "log_every": 7, "device": "cuda", "num_threads": 4}}
    assert split_runtime(stage_settings(other, "base", "asr"))[0] == result
    other = {**CONFIG, "training": {**CONFIG["training"], "checkpoint_every": 3}}
    assert split_runtime(stage_settings(other, "base", "asr"))[0] != result
    # what the script passes back is the same TrainConfig as the whole block
    assert TrainConfig.from_dict({**result, **runtime}) == TrainConfig.from_dict(
        stage_settings(CONFIG, "base", "asr")
    )
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        split_runtime({**stage_settings(CONFIG, "base", "asr"), "lr": 1})


def test_decoding_result_settings():
    block = {"splits": ["dev", "test"], "device": "cuda", "beam_size": 5, "batch_frames": 20000,
             "comet_checkpoint": None, "no_repeat_ngram_size": 5, "max_len_a": 0, "max_len_b": 200}  # fmt: skip
    decode = decoding_result_settings(block, extra=("batch_frames", "comet_checkpoint"))
    assert "splits" not in decode and "device" not in decode
    assert decode["batch_frames"] == 20000 and decode["beam_size"] == 5 and decode["force_lang_tag"] is True
    deletion = decoding_result_settings(block)
    assert set(deletion) == set(DecodingOptions.__dataclass_fields__)
    assert decoding_result_settings({**block, "splits": ["train"], "device": "cpu"}) == deletion
    assert decoding_result_settings({**block, "beam_size": 4}) != deletion
    # the params round-trip to the same options (the decode script adds the device back)
    options, extra = split_decoding_settings({**decode, "device": "cpu"})
    assert options == split_decoding_settings(block)[0] and extra["device"] == "cpu"
    with pytest.raises(ValueError, match="device"):
        decoding_result_settings(block, extra=("device",))


def test_segmentation_options_from_the_input_block():
    section = {"n_masks": 1200, "p": 0.5, "base_segments": [8, 12], "threshold_frames": None,
               "reference_frames": 16, "compactness": 0.1, "sigma": 0}  # fmt: skip
    options = SegmentationOptions.from_config(section)
    assert options == SegmentationOptions(base_segments=(8, 12), threshold_frames=None, reference_frames=16)
    assert SegmentationOptions.from_config({**section, "n_masks": 40, "p": 0.3}).asdict() == options.asdict()
    assert SegmentationOptions.from_config(options.asdict()) == options
    assert options.asdict()["base_segments"] == [8, 12]
