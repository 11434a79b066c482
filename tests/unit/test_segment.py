"""Unit tests for caspes.explain.segment (multi-level SLIC of a spectrogram, spec §1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.segmentation import slic

from caspes.core.manifest import DataError
from caspes.core.zipstore import RecordArchive
from caspes.explain.segment import (
    SegmentationOptions,
    SegmentationStore,
    n_segments,
    rescale_unit,
    segment_levels,
    write_segmentations,
)

# small images: ~1 patch per 60 / 120 / 240 cells of a 120 x 40 image
SMALL = SegmentationOptions(base_segments=(20, 40, 80), threshold_frames=None, reference_frames=120)


def _image(t: int = 120, f: int = 40, seed: int = 1, noise: float = 0.3) -> np.ndarray:
    """A smooth structured (T, F) image plus noise (CMVN-like values around 0)."""
    rng = np.random.default_rng(seed)
    tt = np.arange(t)[:, None]
    ff = np.arange(f)[None, :]
    smooth = np.sin(tt / 7.0) * np.cos(ff / 5.0) + 0.5 * np.sin((tt + 2 * ff) / 11.0)
    return smooth + noise * rng.standard_normal((t, f))


# --------------------------------------------------------------------------- counts
@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (1, [4, 5, 6]),
        (100, [400, 500, 600]),
        (250, [1000, 1250, 1500]),
        (500, [2000, 2500, 3000]),
        (749, [2996, 3745, 4494]),
        (750, [3000, 3750, 4500]),
        (751, [3000, 3750, 4500]),
        (2000, [3000, 3750, 4500]),
    ],
)
def test_n_segments_paper_settings(frames: int, expected: list[int]) -> None:
    assert n_segments(frames) == expected
    assert n_segments(frames, SegmentationOptions()) == expected


def test_n_segments_formula_variants() -> None:
    unfrozen = SegmentationOptions(threshold_frames=None)
    assert n_segments(2000, unfrozen) == [8000, 10000, 12000]
    assert n_segments(751, unfrozen) == [3004, 3755, 4506]
    # round(b * T / ref), never 0
    assert n_segments(1, SegmentationOptions(base_segments=(1,), reference_frames=1000)) == [1]
    assert n_segments(3, SegmentationOptions(base_segments=(10, 7), reference_frames=4)) == [
        round(10 * 3 / 4),
        round(7 * 3 / 4),
    ]
    assert n_segments(
        10, SegmentationOptions(base_segments=(40,), threshold_frames=5, reference_frames=20)
    ) == [10]
    with pytest.raises(ValueError):
        n_segments(0)


def test_options_validation() -> None:
    opts = SegmentationOptions(base_segments=[5.0, 6])  # type: ignore[arg-type]
    assert opts.base_segments == (5, 6)
    assert SegmentationOptions().sigma == 0.0 and SegmentationOptions().compactness == 0.1
    for bad in (
        dict(base_segments=()),
        dict(base_segments=(0, 5)),
        dict(threshold_frames=0),
        dict(reference_frames=0),
        dict(compactness=0.0),
        dict(sigma=-1.0),
        dict(max_iter=0),
    ):
        with pytest.raises(ValueError):
            SegmentationOptions(**bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rescaling
def test_rescale_unit() -> None:
    x = _image(30, 8)
    y = rescale_unit(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    assert y.min() == 0.0 and y.max() == 1.0
    np.testing.assert_allclose(y, (x - x.min()) / (x.max() - x.min()), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(rescale_unit(np.full((4, 3), -2.5)), np.zeros((4, 3)))
    ints = rescale_unit(np.array([[1, 3], [5, 2]], dtype=np.int16))
    np.testing.assert_allclose(ints, [[0.0, 0.5], [1.0, 0.25]])
    x32 = x.astype(np.float32)
    assert rescale_unit(x32).dtype == np.float64  # the input is not modified in place
    np.testing.assert_array_equal(x32, x.astype(np.float32))


# --------------------------------------------------------------------------- SLIC
def test_segment_levels_labels_dense_and_close_to_requested() -> None:
    x = _image()
    levels, requested = segment_levels(x, SMALL)
    assert requested == [20, 40, 80] == n_segments(120, SMALL)
    assert len(levels) == 3
    counts = []
    for lab, n in zip(levels, requested):
        assert lab.dtype == np.int32 and lab.shape == x.shape
        s = int(lab.max()) + 1
        assert lab.min() == 0
        np.testing.assert_array_equal(np.unique(lab), np.arange(s))  # every label used
        assert n / 2 <= s <= 2 * n, (s, n)
        counts.append(s)
    assert counts[0] < counts[1] < counts[2]  # finer with more requested segments
    again, _ = segment_levels(x.copy(), SMALL)
    for a, b in zip(levels, again):
        np.testing.assert_array_equal(a, b)


def test_segment_levels_paper_defaults_on_short_input() -> None:
    x = _image(30, 8)  # 240 cells, 120 / 150 / 180 requested patches
    levels, requested = segment_levels(x)
    assert requested == [120, 150, 180]
    for lab in levels:
        s = int(lab.max()) + 1
        np.testing.assert_array_equal(np.unique(lab), np.arange(s))
        assert 30 <= s <= 240


def test_segment_levels_is_slic_with_sigma_zero() -> None:
    x = _image()
    image = rescale_unit(x)
    levels, requested = segment_levels(x, SMALL)
    smoothed, _ = segment_levels(x, SegmentationOptions(**{**SMALL.__dict__, "sigma": 1.0}))
    differs = 0
    for lab, smooth_lab, n in zip(levels, smoothed, requested):
        direct = slic(image, n_segments=n, compactness=0.1, sigma=0, channel_axis=None, start_label=1)
        assert direct.min() == 1
        np.testing.assert_array_equal(lab, direct - 1)
        with_sigma = slic(image, n_segments=n, compactness=0.1, sigma=1, channel_axis=None, start_label=1)
        np.testing.assert_array_equal(smooth_lab, with_sigma - 1)
        differs += not np.array_equal(lab, with_sigma - 1)
    # on this noisy image skimage's default sigma=1 gives other partitions: the check above can fail
    assert differs == 3
    # SLIC sees the globally rescaled matrix: an affine change of the features changes nothing
    for a, b in zip(levels, segment_levels(4.0 * x - 7.0, SMALL)[0]):
        np.testing.assert_array_equal(a, b)


def test_segment_levels_constant_and_tiny_inputs() -> None:
    levels, requested = segment_levels(
        np.zeros((12, 6)), SegmentationOptions(base_segments=(4,), reference_frames=12)
    )
    assert requested == [4]
    np.testing.assert_array_equal(np.unique(levels[0]), np.arange(levels[0].max() + 1))
    one, req = segment_levels(np.array([[0.5, -1.0, 2.0]]))
    assert req == [4, 5, 6]
    for lab in one:
        assert lab.shape == (1, 3) and lab.dtype == np.int32
        np.testing.assert_array_equal(np.unique(lab), np.arange(lab.max() + 1))


@pytest.mark.parametrize(
    "bad",
    [
        np.arange(10.0),
        np.zeros((0, 5)),
        np.zeros((5, 0)),
        np.zeros((2, 3, 4)),
        np.array([[0.0, np.nan], [1.0, 2.0]]),
        np.array([[0.0, np.inf], [1.0, 2.0]]),
    ],
)
def test_segment_levels_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        segment_levels(bad, SMALL)


# --------------------------------------------------------------------------- store
def test_write_segmentations_round_trip(tmp_path: Path) -> None:
    feats = [("u1", _image(120, 40, seed=2)), ("u0", _image(60, 40, seed=3)), ("u2", _image(7, 40, seed=4))]
    path = tmp_path / "seg.zip"
    summary = write_segmentations(path, iter(feats), SMALL)
    assert summary["utterances"] == 3
    expected = {uid: segment_levels(x, SMALL) for uid, x in feats}
    for k in range(3):
        req = np.mean([expected[u][1][k] for u in expected])
        got = np.mean([expected[u][0][k].max() + 1 for u in expected])
        assert summary[f"requested_level{k}"] == pytest.approx(round(req, 1))
        assert summary[f"segments_level{k}"] == pytest.approx(round(got, 1))
    with SegmentationStore(path) as store:
        assert store.ids == ["u1", "u0", "u2"]
        for uid, _ in feats:
            levels = store.levels(uid)
            want, requested = expected[uid]
            assert len(levels) == 3
            for a, b in zip(levels, want):
                assert a.dtype == np.int32
                np.testing.assert_array_equal(a, b)
            raw = RecordArchive.__getitem__(store, uid)
            assert raw["labels"].dtype == np.int16  # small label counts are stored as int16
            np.testing.assert_array_equal(raw["n_segments"], [int(lab.max()) + 1 for lab in want])
            np.testing.assert_array_equal(raw["requested"], requested)
    # the same input gives the same bytes
    write_segmentations(tmp_path / "again.zip", iter(feats), SMALL)
    assert (tmp_path / "again.zip").read_bytes() == path.read_bytes()


def test_write_segmentations_failure_leaves_no_store(tmp_path: Path) -> None:
    feats = [("ok", _image(20, 8)), ("bad", np.full((20, 8), np.nan))]
    with pytest.raises(ValueError):
        write_segmentations(tmp_path / "seg.zip", iter(feats), SMALL)
    assert not (tmp_path / "seg.zip").exists()
    with pytest.raises(DataError):
        SegmentationStore(tmp_path / "seg.zip")
