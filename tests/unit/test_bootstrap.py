"""Unit tests for caspes.bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from caspes.analysis import bootstrap as bs
from caspes.analysis.bootstrap import Interval, bootstrap_ci, bootstrap_ci_groups, paired_bootstrap_pvalue

B = 500  # resamples used in the tests (small, to stay fast)


def _normal(seed: int | list[int], n: int, mean: float = 0.3, sd: float = 0.2) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


# ---------------------------------------------------------------------------- bootstrap_ci


def test_matches_reference_percentile_bootstrap() -> None:
    x = _normal(0, 40)
    iv = bootstrap_ci(x, n_resamples=B, seed=7, level=0.9)
    rng = np.random.Generator(np.random.PCG64(7))
    means = x[rng.integers(0, x.size, size=(B, x.size))].mean(axis=1)
    low, high = np.quantile(means, [0.05, 0.95])
    assert iv == Interval(float(x.mean()), float(low), float(high), 40)
    assert iv.half_width == pytest.approx((high - low) / 2)


def test_deterministic_for_seed_and_seed_dependent() -> None:
    x = _normal(1, 30)
    assert bootstrap_ci(x, B, seed=3) == bootstrap_ci(list(x), B, seed=3)
    other = bootstrap_ci(x, B, seed=4)
    same = bootstrap_ci(x, B, seed=3)
    assert other.mean == same.mean
    assert (other.low, other.high) != (same.low, same.high)


def test_nonfinite_values_excluded() -> None:
    x = _normal(2, 25)
    with_nan = np.concatenate([[math.nan], x[:10], [math.nan, math.inf], x[10:], [-math.inf]])
    iv = bootstrap_ci(with_nan, B, seed=5)
    assert iv.n == 25
    assert iv == bootstrap_ci(x, B, seed=5)
    assert math.isfinite(iv.mean) and math.isfinite(iv.low) and math.isfinite(iv.high)


@pytest.mark.parametrize("values", [[], [math.nan], [math.nan, math.nan, math.inf]])
def test_no_finite_values(values: list[float]) -> None:
    iv = bootstrap_ci(values, B)
    assert iv.n == 0
    assert math.isnan(iv.mean) and math.isnan(iv.low) and math.isnan(iv.high)
    assert math.isnan(iv.half_width)


def test_single_value() -> None:
    iv = bootstrap_ci([math.nan, 0.42, math.nan], B)
    assert iv == Interval(0.42, 0.42, 0.42, 1)
    assert iv.half_width == 0.0


def test_constant_values_give_degenerate_interval() -> None:
    iv = bootstrap_ci([0.5] * 10, B)
    assert (iv.mean, iv.n) == (0.5, 10)
    assert iv.low == pytest.approx(0.5) and iv.high == pytest.approx(0.5)


def test_interval_contains_mean_and_narrows_with_n() -> None:
    widths = []
    for n in (20, 200, 2000):
        iv = bootstrap_ci(_normal([3, n], n), B, seed=1)
        assert iv.low < iv.mean < iv.high
        widths.append(iv.half_width)
    assert widths[0] > widths[1] > widths[2]
    # the half width is about 1.96 * sd / sqrt(n)
    assert widths[2] == pytest.approx(1.96 * 0.2 / math.sqrt(2000), rel=0.2)


def test_higher_level_gives_wider_interval() -> None:
    x = _normal(4, 60)
    narrow = bootstrap_ci(x, B, seed=2, level=0.8)
    wide = bootstrap_ci(x, B, seed=2, level=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


@pytest.mark.parametrize("level", [0.0, 1.0, -0.1, 1.5, 95])
def test_level_outside_unit_interval(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([0.1, 0.2, 0.3], level=level)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([], level=level)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_ci([0.1, 0.2], n_resamples=0)
    with pytest.raises(ValueError, match="one-dimensional"):
        bootstrap_ci(np.zeros((3, 2)))


def test_chunked_resampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks (several chunks, last one partial) still give a sensible, deterministic CI."""
    monkeypatch.setattr(bs, "_CHUNK_ELEMENTS", 64)
    x = _normal(5, 30)  # 2 rows per chunk
    iv = bootstrap_ci(x, 1001, seed=9)
    assert iv == bootstrap_ci(x, 1001, seed=9)
    assert iv.low < iv.mean < iv.high
    assert iv.half_width == pytest.approx(1.96 * x.std() / math.sqrt(30), rel=0.25)
    monkeypatch.setattr(bs, "_CHUNK_ELEMENTS", 4)  # fewer elements than one row: one row per chunk
    iv1 = bootstrap_ci(x, 101, seed=9)
    assert iv1.low < iv1.mean < iv1.high


def test_coverage_close_to_nominal() -> None:
    # True mean 0.3, sd 0.2, n = 50, 200 independent datasets. The percentile bootstrap slightly
    # under-covers for small n (its spread uses sd/sqrt(n) rather than sd/sqrt(n-1) and normal rather
    # than t quantiles), so the rate is typically ~0.93-0.94; the bounds allow for that plus the
    # binomial noise of 200 repetitions (sd ~0.015).
    true_mean, reps = 0.3, 200
    covered = 0
    for r in range(reps):
        iv = bootstrap_ci(_normal([10, r], 50, true_mean), B, seed=r)
        covered += iv.low <= true_mean <= iv.high
    rate = covered / reps
    assert 0.88 <= rate <= 0.99


# ---------------------------------------------------------------------------- bootstrap_ci_groups


def test_groups_seeds_and_independence() -> None:
    x, y = _normal(6, 20), _normal(7, 35)
    table = {"H": x, "X": [*y, math.nan], "empty": []}
    out = bootstrap_ci_groups(table, n_resamples=B, seed=11)
    assert list(out) == ["H", "X", "empty"]
    assert out == bootstrap_ci_groups(table, n_resamples=B, seed=11)
    for i, key in enumerate(["H", "X"]):
        seed_i = int(np.random.SeedSequence([11, i]).generate_state(1)[0])
        assert out[key] == bootstrap_ci(table[key], B, seed=seed_i)
    assert out["X"].n == 35
    assert out["empty"].n == 0 and math.isnan(out["empty"].mean)
    # a group's CI depends only on its own values and position, not on the other groups
    assert bootstrap_ci_groups({"a": _normal(8, 20), "b": y}, B, seed=11)["b"] == out["X"]
    # identical data at different positions get different (independent) resamples
    twin = bootstrap_ci_groups({"p": x, "q": x}, B, seed=11)
    assert twin["p"].mean == twin["q"].mean
    assert (twin["p"].low, twin["p"].high) != (twin["q"].low, twin["q"].high)
    # another base seed changes every group
    other = bootstrap_ci_groups(table, n_resamples=B, seed=12)
    assert other["H"].low != out["H"].low and other["X"].low != out["X"].low


def test_groups_validate_level() -> None:
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci_groups({"a": [0.1, 0.2]}, level=1.0)


# ---------------------------------------------------------------------------- paired test


def test_paired_matches_reference() -> None:
    g = np.random.default_rng(20)
    a, b = g.normal(0.3, 0.2, 40), g.normal(0.28, 0.2, 40)
    m, p = paired_bootstrap_pvalue(a, b, n_resamples=B, seed=3)
    d = a - b
    rng = np.random.Generator(np.random.PCG64(3))
    means = d[rng.integers(0, d.size, size=(B, d.size))].mean(axis=1)
    expected = (1 + np.sum(np.abs(means - d.mean()) >= abs(d.mean()))) / (1 + B)
    assert m == pytest.approx(d.mean())
    assert p == pytest.approx(expected)
    assert (m, p) == paired_bootstrap_pvalue(list(a), list(b), n_resamples=B, seed=3)


def test_paired_null_pvalues_roughly_uniform() -> None:
    pvals = []
    for r in range(200):
        g = np.random.default_rng([30, r])
        a, b = g.normal(0.3, 0.2, 50), g.normal(0.3, 0.2, 50)
        pvals.append(paired_bootstrap_pvalue(a, b, n_resamples=B, seed=r)[1])
    p = np.asarray(pvals)
    assert np.all((p > 0) & (p <= 1))
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.01 <= np.mean(p < 0.05) <= 0.12


def test_paired_real_shift_detected() -> None:
    g = np.random.default_rng(40)
    a = g.normal(0.3, 0.2, 50)
    b = a - 0.3 + g.normal(0.0, 0.1, 50)
    m, p = paired_bootstrap_pvalue(a, b, n_resamples=B, seed=1)
    assert m == pytest.approx(0.3, abs=0.05)
    assert p < 0.01
    assert p == pytest.approx(1 / (1 + B))  # no resample that extreme: the smallest attainable p
    m_rev, p_rev = paired_bootstrap_pvalue(b, a, n_resamples=B, seed=1)
    assert m_rev == pytest.approx(-m) and p_rev == p


def test_paired_drops_nonfinite_pairs() -> None:
    g = np.random.default_rng(50)
    a, b = g.normal(0.3, 0.2, 30), g.normal(0.2, 0.2, 30)
    a_nan, b_nan = a.copy(), b.copy()
    a_nan[[0, 5]] = math.nan
    b_nan[[5, 9]] = math.nan
    b_nan[12] = math.inf
    keep = np.ones(30, dtype=bool)
    keep[[0, 5, 9, 12]] = False
    assert paired_bootstrap_pvalue(a_nan, b_nan, B, seed=2) == paired_bootstrap_pvalue(
        a[keep], b[keep], B, seed=2
    )


def test_paired_degenerate_cases() -> None:
    for a, b in [([], []), ([0.1], [0.2]), ([0.1, math.nan], [0.2, 0.3]), ([math.nan] * 3, [0.1] * 3)]:
        m, p = paired_bootstrap_pvalue(a, b, B)
        assert math.isnan(m) and math.isnan(p)
    # identical samples: zero difference, p = 1
    x = _normal(60, 20)
    assert paired_bootstrap_pvalue(x, x.copy(), B) == (0.0, 1.0)


def test_paired_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap_pvalue([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap_pvalue([0.1, 0.2], [0.1, 0.2], n_resamples=-5)
