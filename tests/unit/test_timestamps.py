import math

import numpy as np
import pytest

from caspes.analysis.dtw import (
    FRAME_SECONDS,
    dtw_cost,
    dtw_path,
    token_spans_argmax,
    token_spans_centroid,
    token_spans_dtw,
)
from caspes.analysis.timestamps import (
    align_words,
    estimate_word_times,
    group_words,
    timestamp_errors,
    word_times,
    words_text,
)
from caspes.explain.maps import minmax, zscore

# --------------------------------------------------------------------------- words


def test_group_words_basic():
    pieces = ["▁the", "▁cat", "s", "▁sat"]
    groups = group_words(pieces)
    assert groups == [[0], [1, 2], [3]]
    assert words_text(pieces, groups) == ["the", "cats", "sat"]


def test_group_words_leading_piece_without_marker_opens_first_word():
    pieces = ["ing", "s", "▁on", "▁mat"]
    groups = group_words(pieces)
    assert groups == [[0, 1], [2], [3]]
    assert words_text(pieces, groups) == ["ings", "on", "mat"]


def test_group_words_bare_marker_opens_a_word():
    pieces = ["▁the", "▁", "5", "0", "▁cats"]
    groups = group_words(pieces)
    assert groups == [[0], [1, 2, 3], [4]]
    assert words_text(pieces, groups) == ["the", "50", "cats"]


def test_group_words_empty():
    assert group_words([]) == []
    assert words_text([], []) == []


# --------------------------------------------------------------------------- DTW


def _monotone_paths(n_rows, n_cols):
    """All paths from (0, 0) to (n_rows-1, n_cols-1) with steps (1,1), (1,0), (0,1)."""

    def extend(path):
        i, j = path[-1]
        if (i, j) == (n_rows - 1, n_cols - 1):
            yield path
            return
        for di, dj in ((1, 1), (1, 0), (0, 1)):
            if i + di < n_rows and j + dj < n_cols:
                yield from extend(path + [(i + di, j + dj)])

    yield from extend([(0, 0)])


def _brute_force(cost):
    best = None
    for path in _monotone_paths(*cost.shape):
        total = sum(cost[i, j] for i, j in path)
        if best is None or total < best[0]:
            best = (total, path)
    return best


@pytest.mark.parametrize("shape", [(3, 4), (4, 3), (3, 3), (2, 5)])
@pytest.mark.parametrize("seed", range(6))
def test_dtw_path_matches_brute_force(shape, seed):
    rng = np.random.default_rng(seed)
    cost = rng.normal(size=shape)  # negative costs too
    best_cost, best_path = _brute_force(cost)
    rows, cols = dtw_path(cost)
    path = list(zip(rows.tolist(), cols.tolist()))
    assert path == best_path  # continuous random costs: the optimum is unique
    assert math.isclose(cost[rows, cols].sum(), best_cost, rel_tol=0, abs_tol=1e-12)


def test_dtw_path_brute_force_count_sanity():
    # Delannoy number D(2, 3) = 25 monotone paths on a 3x4 grid
    assert sum(1 for _ in _monotone_paths(3, 4)) == 25


def test_dtw_path_hand_made():
    # cheap cells trace a staircase; every other cell is expensive
    cost = np.array(
        [
            [0.0, 0.0, 9.0, 9.0, 9.0],
            [9.0, 9.0, 0.0, 9.0, 9.0],
            [9.0, 9.0, 9.0, 0.0, 0.0],
        ]
    )
    rows, cols = dtw_path(cost)
    assert rows.tolist() == [0, 0, 1, 2, 2]
    assert cols.tolist() == [0, 1, 2, 3, 4]
    assert rows.dtype == np.int64 and cols.dtype == np.int64


def test_dtw_path_tie_breaking_prefers_diagonal():
    rows, cols = dtw_path(np.zeros((4, 4)))
    assert rows.tolist() == [0, 1, 2, 3] and cols.tolist() == [0, 1, 2, 3]
    rows, cols = dtw_path(np.zeros((2, 4)))
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 3)]


def test_dtw_path_degenerate_shapes():
    rows, cols = dtw_path(np.ones((1, 5)))
    assert rows.tolist() == [0] * 5 and cols.tolist() == list(range(5))
    rows, cols = dtw_path(np.ones((4, 1)))
    assert rows.tolist() == list(range(4)) and cols.tolist() == [0] * 4
    rows, cols = dtw_path(np.array([[3.0]]))
    assert rows.tolist() == [0] and cols.tolist() == [0]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 3)), np.zeros((3, 0)), np.zeros(5), np.zeros((2, 2, 2)), np.array([[0.0, np.nan]])],
)
def test_dtw_path_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        dtw_path(bad)
    with pytest.raises(ValueError):
        token_spans_dtw(bad)


def test_row_normalisations_and_constant_row():
    sal = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    z = zscore(sal, axis=1)
    np.testing.assert_allclose(z[0], [-math.sqrt(1.5), 0.0, math.sqrt(1.5)])
    np.testing.assert_array_equal(z[1], 0.0)
    np.testing.assert_allclose(minmax(sal, axis=1), [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(dtw_cost(sal), [[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(dtw_cost(sal, "zscore"), -z)
    with pytest.raises(ValueError):
        dtw_cost(sal, "softmax")


# --------------------------------------------------------------------------- planted maps


def _planted(seed, n_tokens=12, noise=0.0):
    """A map where token i has mass only in frames [a_i, b_i) (contiguous, covering), plus words."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 7, size=n_tokens)  # 2-6 frames each
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    spans = [(int(bounds[i]), int(bounds[i + 1])) for i in range(n_tokens)]
    n_frames = int(bounds[-1])
    sal = np.zeros((n_tokens, n_frames))
    for i, (a, b) in enumerate(spans):
        sal[i, a:b] = rng.uniform(0.5, 1.0, size=b - a)
    if noise:
        sal = sal + rng.normal(scale=noise, size=sal.shape)
    # pieces: each token opens a word with probability 0.6 (the first always does)
    pieces = []
    for i in range(n_tokens):
        opens = i == 0 or rng.random() < 0.6
        pieces.append(("▁" if opens else "") + f"p{i}")
    groups = group_words(pieces)
    truth = [(spans[g[0]][0] * FRAME_SECONDS, spans[g[-1]][1] * FRAME_SECONDS) for g in groups]
    return sal, spans, pieces, groups, truth


def test_planted_maps_have_multi_piece_words():
    for seed in range(8):
        _, _, pieces, groups, _ = _planted(seed)
        assert 1 < len(groups) < len(pieces)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("noise", [0.0, 0.02, 0.05])
def test_dtw_recovers_planted_spans_and_word_times(seed, noise):
    sal, spans, pieces, groups, truth = _planted(seed, noise=noise)
    assert token_spans_dtw(sal) == spans
    for monotonic in (True, False):
        got = estimate_word_times(sal, pieces, "dtw", monotonic=monotonic)
        assert got == pytest.approx(truth, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_dtw_zscore_recovers_noiseless_planted_spans(seed):
    sal, spans, pieces, _, truth = _planted(seed)
    assert token_spans_dtw(sal, normalisation="zscore") == spans
    got = estimate_word_times(sal, pieces, "dtw", normalisation="zscore")
    assert got == pytest.approx(truth, abs=1e-12)


def test_dtw_more_tokens_than_frames():
    # 5 tokens on 3 frames: the path must stack several tokens on a frame, and still be monotone
    sal = np.array(
        [
            [1.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 1.0],
        ]
    )
    spans = token_spans_dtw(sal)
    assert spans == [(0, 1), (0, 1), (1, 2), (2, 3), (2, 3)]
    times = word_times(spans, group_words(["▁a", "b", "▁c", "▁d", "e"]))
    assert times == pytest.approx([(0.0, 0.04), (0.04, 0.08), (0.08, 0.12)])


@pytest.mark.parametrize("seed", range(8))
def test_point_baselines_fall_inside_true_spans(seed):
    sal, spans, pieces, groups, truth = _planted(seed)
    for spans_of in (token_spans_argmax, token_spans_centroid):
        got = spans_of(sal)
        for (f, f1), (a, b) in zip(got, spans):
            assert f1 == f + 1
            assert a <= f < b
    for method in ("argmax", "centroid"):
        raw = estimate_word_times(sal, pieces, method, monotonic=False)
        mono = estimate_word_times(sal, pieces, method, monotonic=True)
        for k, ((s, e), (ms, me), (ts, te)) in enumerate(zip(raw, mono, truth)):
            assert ts - 1e-12 <= s < e <= te + 1e-12  # raw word times inside the true word
            assert ms == pytest.approx(s)  # same start
            if k + 1 < len(truth):
                assert me == pytest.approx(mono[k + 1][0])  # runs up to the next word's start
                assert te - 1e-12 <= me < truth[k + 1][1]
            else:
                assert me == pytest.approx(e)  # last word: its last piece's frame + 1


def test_argmax_noisy_planted_map_inside_true_spans():
    sal, spans, *_ = _planted(3, noise=0.02)
    for (f, _), (a, b) in zip(token_spans_argmax(sal), spans):
        assert a <= f < b


def test_centroid_hand_example_and_constant_row():
    sal = np.array([[0.0, 0.0, 1.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0], [1.0, 3.0, 1.0, 1.0, 1.0]])
    # row 0: centre 2.5 -> rounds half up to 3; row 1: no mass -> middle frame 2; row 2: peak at 1
    assert token_spans_centroid(sal) == [(3, 4), (2, 3), (1, 2)]
    assert token_spans_argmax(sal) == [(2, 3), (0, 1), (1, 2)]


def test_word_times_monotonic_rules():
    # point spans that go back in time: word 1 starts before word 0
    spans = [(5, 6), (3, 4), (9, 10), (9, 10)]
    groups = [[0], [1], [2, 3]]
    raw = word_times(spans, groups, frame_seconds=1.0, monotonic=False)
    assert raw == [(5.0, 6.0), (3.0, 4.0), (9.0, 10.0)]
    mono = word_times(spans, groups, frame_seconds=1.0, monotonic=True)
    assert mono == [(5.0, 6.0), (5.0, 9.0), (9.0, 10.0)]  # start clamped, end >= start + 1 frame


def test_word_times_rejects_bad_groups_and_spans():
    with pytest.raises(ValueError):
        word_times([(0, 1)], [[1]])
    with pytest.raises(ValueError):
        word_times([(0, 1)], [[]])
    with pytest.raises(ValueError):
        word_times([(2, 2)], [[0]])


def test_estimate_word_times_checks_rows_and_method():
    sal = np.eye(3)
    with pytest.raises(ValueError):
        estimate_word_times(sal, ["▁a", "▁b"], "dtw")
    with pytest.raises(ValueError):
        estimate_word_times(sal, ["▁a", "▁b", "▁c"], "median")
    assert estimate_word_times(sal, ["▁a", "▁b", "▁c"], "dtw") == pytest.approx(
        [(0.0, 0.04), (0.04, 0.08), (0.08, 0.12)]
    )


# --------------------------------------------------------------------------- evaluation


def test_align_words_identical():
    words = "the cat sat".split()
    assert align_words(words, words) == [(0, 0), (1, 1), (2, 2)]


def test_align_words_substitution():
    assert align_words("the dog sat".split(), "the cat sat".split()) == [(0, 0), (2, 2)]


def test_align_words_insertion():
    # hypothesis has an extra word
    assert align_words("the big cat sat".split(), "the cat sat".split()) == [(0, 0), (2, 1), (3, 2)]


def test_align_words_deletion():
    # hypothesis misses a word
    assert align_words("the sat on".split(), "the cat sat on".split()) == [(0, 0), (1, 2), (2, 3)]


def test_align_words_mixed_and_empty():
    hyp = "a the cat sit on mat".split()
    ref = "the cat sat on the mat".split()
    assert align_words(hyp, ref) == [(1, 0), (2, 1), (4, 3), (5, 5)]
    assert align_words([], ref) == []
    assert align_words(hyp, []) == []


def test_timestamp_errors_hand_example():
    pred = [(0.11, 0.53), (0.60, 0.97)]
    ref = [(0.10, 0.50), (0.63, 0.96)]
    # start errors 10 and 30 ms, end errors 30 and 10 ms
    out = timestamp_errors(pred, ref, tolerances=(0.02, 0.05, 0.1))
    assert out["words"] == 2
    assert out["start_mae_ms"] == pytest.approx(20.0)
    assert out["end_mae_ms"] == pytest.approx(20.0)
    assert out["boundary_mae_ms"] == pytest.approx(20.0)
    assert out["within_20ms"] == pytest.approx(0.5)
    assert out["within_50ms"] == 1.0
    assert out["within_100ms"] == 1.0


def test_timestamp_errors_defaults_and_exact_tolerance():
    pred = [(0.35, 1.0), (2.0, 2.5)]
    ref = [(0.30, 1.0), (1.7, 2.6)]
    # errors: starts 50, 300 ms; ends 0, 100 ms -> 0.35 - 0.30 counts as within 50 ms
    out = timestamp_errors(pred, ref)
    assert set(out) == {
        "words",
        "start_mae_ms",
        "end_mae_ms",
        "boundary_mae_ms",
        "within_50ms",
        "within_100ms",
        "within_200ms",
    }
    assert out["start_mae_ms"] == pytest.approx(175.0)
    assert out["end_mae_ms"] == pytest.approx(50.0)
    assert out["within_50ms"] == pytest.approx(0.5)
    assert out["within_100ms"] == pytest.approx(0.75)
    assert out["within_200ms"] == pytest.approx(0.75)


def test_timestamp_errors_empty_and_mismatch():
    out = timestamp_errors([], [])
    assert out["words"] == 0
    assert all(math.isnan(v) for k, v in out.items() if k != "words")
    assert "within_50ms" in out
    with pytest.raises(ValueError):
        timestamp_errors([(0.0, 1.0)], [])


def test_end_to_end_planted_dtw_scores_perfectly():
    sal, _, pieces, groups, truth = _planted(5, noise=0.02)
    hyp = words_text(pieces, groups)
    pairs = align_words(hyp, hyp)
    pred = estimate_word_times(sal, pieces, "dtw")
    out = timestamp_errors([pred[h] for h, _ in pairs], [truth[r] for _, r in pairs])
    assert out["words"] == len(groups)
    assert out["start_mae_ms"] == pytest.approx(0.0, abs=1e-9)
    assert out["within_50ms"] == 1.0
