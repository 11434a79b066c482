"""caspes.explain.maps and caspes.analysis.correlation on small hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caspes.analysis.correlation import correlate, pearson, selections, summarise
from caspes.explain.maps import Selection, content_rows, mean_attention, normalise, pool_saliency


def test_frame_normalisation_by_hand() -> None:
    ca = np.array([[1.0, 0.5, 2.0], [3.0, 0.5, 2.0]])
    # column 0: mean 2, population std 1 -> -1, 1; columns 1 and 2 are constant -> 0
    np.testing.assert_allclose(normalise(ca, "frame"), [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    three = np.array([[0.0], [1.0], [2.0]])  # mean 1, std sqrt(2/3)
    np.testing.assert_allclose(normalise(three, "frame")[:, 0], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])


def test_token_normalisation_by_hand() -> None:
    sm = np.array([[2.0, 4.0, 3.0], [5.0, 5.0, 5.0], [0.0, -1.0, 1.0]])
    np.testing.assert_allclose(
        normalise(sm, "token"), [[0.0, 1.0, 0.5], [0.0, 0.0, 0.0], [0.5, 0.0, 1.0]], atol=1e-7
    )
    np.testing.assert_array_equal(normalise(sm, "none"), sm)
    with pytest.raises(ValueError):
        normalise(sm, "column")


def test_pooling_by_hand() -> None:
    # one token, T = 5 frames (-> T' = 2: frames 0-3 and frame 4), F = 2 bins
    sm = np.array([[[1, 2], [0, 0], [4, 0], [1, 1], [3, 5]]], dtype=float)
    np.testing.assert_allclose(pool_saliency(sm, "max2d"), [[4.0, 5.0]])
    np.testing.assert_allclose(pool_saliency(sm, "avg2d"), [[9 / 8, 4.0]])  # (3 + 0 + 4 + 2) / 8; (3 + 5) / 2
    np.testing.assert_allclose(pool_saliency(sm, "max1d_avg1d"), [[(2 + 0 + 4 + 1) / 4, 5.0]])
    assert pool_saliency(np.zeros((3, 8, 4))).shape == (3, 2)
    with pytest.raises(ValueError):
        pool_saliency(sm, "median")


def test_pearson_and_undefined() -> None:
    assert pearson(np.array([[1, 2], [3, 4]]), np.array([[2, 4], [6, 8]])) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # hand computation: x = 1 2 3 4, y = 1 3 2 4 -> r = 0.8
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        pearson([1, 2], [1, 2, 3])


def test_selections_and_mean_attention() -> None:
    sels = selections(2, 3)
    assert len(sels) == 2 * 3 + 2 + 3 + 1
    assert Selection("avg", 2).pairs(2, 3) == [(0, 1), (1, 1)]
    assert Selection(2, "avg").pairs(2, 3) == [(1, 0), (1, 1), (1, 2)]
    att = np.arange(2 * 3 * 1 * 2, dtype=float).reshape(2, 3, 1, 2)
    np.testing.assert_allclose(
        mean_attention(att, Selection("avg", "avg").pairs(2, 3)), att.mean(axis=(0, 1))
    )
    np.testing.assert_allclose(mean_attention(att, [(1, 2)]), att[1, 2])


def test_correlate_drops_tag_and_eos_rows_and_normalises() -> None:
    roles = ["lang", "token", "token", "eos"]
    assert content_rows(roles).tolist() == [False, True, True, False]
    # CA: 1 layer, 1 head, 4 rows, 2 frames. The tag and EOS rows would reverse the sign if kept.
    att = np.array([[[[0.0, 9.0], [0.9, 0.1], [0.2, 0.8], [9.0, 0.0]]]])
    sal = np.array([[5.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    (rec,) = correlate(att, sal, roles, [Selection(1, 1)])
    # kept CA rows [0.9 0.1; 0.2 0.8]: frame-wise z -> [1 -1; -1 1]; SM rows min-max -> [1 0; 0 1]
    assert rec["r"] == pytest.approx(pearson([1, -1, -1, 1], [1, 0, 0, 1]))
    assert rec["r"] == pytest.approx(1.0)
    # with the tag/EOS rows in, the same data would correlate negatively
    assert pearson(normalise(att[0, 0], "frame"), normalise(sal, "token")) < 0
    # a single kept row: frame-wise normalisation makes CA constant -> r undefined, reported as NaN
    (one,) = correlate(att[:, :, :3], sal[:3], ["lang", "token", "eos"], [Selection(1, 1)])
    assert math.isnan(one["r"])


def test_summarise_counts_undefined() -> None:
    recs = [
        {"layer": 1, "head": "avg", "r": 0.5},
        {"layer": 1, "head": "avg", "r": float("nan")},
        {"layer": 1, "head": "avg", "r": 0.7},
        {"layer": 2, "head": "avg", "r": 0.1},
    ]
    out = summarise(recs, ["layer", "head"])
    assert out[0] == {"layer": 1, "head": "avg", "r": pytest.approx(0.6), "utterances": 2, "undefined": 1}
    assert out[1]["r"] == pytest.approx(0.1) and out[1]["undefined"] == 0
