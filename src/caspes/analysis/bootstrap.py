"""Bootstrap confidence intervals and paired bootstrap tests over utterances.

The project reports means of per-utterance values (e.g. a Pearson correlation computed for each
utterance, averaged over the test set). Some per-utterance values are undefined (NaN, e.g. a
correlation with a constant vector); they are *excluded*, not counted as zero, so every statistic
below is computed on the finite values only and reports how many it used.

Method
------
* :func:`bootstrap_ci` — **percentile bootstrap** of the mean. With ``x`` the ``n`` finite values,
  draw ``B = n_resamples`` resamples of size ``n`` with replacement (i.e. resample utterances),
  take the mean of each, and report the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of
  those ``B`` means (``numpy.quantile``, linear interpolation) as ``low`` / ``high``, together with
  the sample mean of ``x``. Resample indices are drawn from ``numpy.random.Generator(PCG64(seed))``
  in chunks of rows (at most about a million indices at a time), so memory stays bounded for any
  ``B`` and the result is a deterministic function of ``(values, n_resamples, seed, level)``.
  ``n == 0`` gives an all-NaN interval; ``n == 1`` gives ``low == high == mean`` (no variability
  can be estimated from one value). The percentile interval is known to under-cover slightly for
  small ``n`` (it is roughly a normal interval with ``sd / sqrt(n)`` instead of ``sd / sqrt(n-1)``
  and z instead of t quantiles).
* :func:`bootstrap_ci_groups` — one :func:`bootstrap_ci` per key of a mapping; the key at position
  ``i`` (iteration order of the mapping) uses the seed
  ``numpy.random.SeedSequence([seed, i]).generate_state(1)[0]``, so groups get independent
  streams and each group's result does not depend on the other groups' values.
* :func:`paired_bootstrap_pvalue` — two-sided **paired bootstrap test** of ``mean(a - b) == 0`` for
  two quantities measured on the same utterances. Only pairs where both values are finite are
  used. With ``d = a - b`` and ``m = mean(d)``, resample ``d`` with replacement ``B`` times; under
  the null the bootstrap distribution is shifted to mean zero (the *shift method*), so the p-value is
  ``(1 + #{|mean(d*) - m| >= |m|}) / (1 + B)``. The ``+1`` in numerator and denominator counts the
  observed sample as one of the resamples, so ``p`` is never zero (the smallest value is
  ``1 / (1 + B)``).
* :func:`disattenuated_ci` — the noise-corrected correlation ``mean(r) / sqrt(mean(rel))`` of
  per-utterance correlations ``r`` with a map whose per-utterance reliability is ``rel``
  (Spearman's correction for attenuation, the other map being noise-free).  The ratio is taken of
  the means (a per-utterance ratio would divide by small, noisy reliabilities), on the utterances
  where both are finite; the percentile interval resamples those utterances, r and rel together.
  NaN when the mean reliability is not positive.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = ["Interval", "bootstrap_ci", "bootstrap_ci_groups", "paired_bootstrap_pvalue", "disattenuated_ci"]

K = TypeVar("K", bound=Hashable)


#: Upper bound on the number of resample indices held in memory at once.
_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval.

    ``n`` is the number of finite values the mean and the interval were computed from.
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the width of the interval, ``(high - low) / 2`` (NaN when the interval is NaN)."""
        return (self.high - self.low) / 2.0


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_n_resamples(n_resamples: int) -> None:
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")


def _resample_means(x: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement, size ``len(x)``) of ``x``.

    Index matrices are drawn in chunks of at most ``_CHUNK_ELEMENTS`` entries (at least one row), so
    memory is bounded independently of ``n_resamples``; the chunking depends only on ``len(x)``.
    """
    n = x.size
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(n_resamples, dtype=float)
    for start in range(0, n_resamples, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    return means


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 1,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap CI of the mean of the finite values of ``values`` (NaN/inf dropped).

    Args:
        values: per-utterance values; non-finite entries (NaN = undefined) are excluded.
        n_resamples: number of bootstrap resamples ``B``.
        seed: seed of ``numpy.random.Generator(PCG64(seed))``; equal seeds give equal results.
        level: confidence level, strictly between 0 and 1.

    Returns:
        :class:`Interval` with the sample mean, the ``(1 - level) / 2`` and ``(1 + level) / 2``
        quantiles of the resampled means, and ``n`` = number of finite values. ``n == 0`` gives
        NaN for mean, low and high; ``n == 1`` gives ``low == high == mean``.

    Raises:
        ValueError: ``level`` not in (0, 1), ``n_resamples < 1``, or ``values`` not 1-D.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    _check_n_resamples(n_resamples)
    arr = _as_1d(values, "values")
    x = arr[np.isfinite(arr)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, mean, mean, 1)
    rng = np.random.Generator(np.random.PCG64(seed))
    means = _resample_means(x, int(n_resamples), rng)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(mean, float(low), float(high), n)


def _group_seed(seed: int, position: int) -> int:
    """Seed for the group at ``position``: first word of ``SeedSequence([seed, position])``."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


def bootstrap_ci_groups(
    table: Mapping[K, Sequence[float] | np.ndarray],
    n_resamples: int = 1000,
    seed: int = 1,
    level: float = 0.95,
) -> dict[K, Interval]:
    """One :func:`bootstrap_ci` per key of ``table``, in the mapping's iteration order.

    The key at position ``i`` is bootstrapped with seed
    ``numpy.random.SeedSequence([seed, i]).generate_state(1)[0]``: deterministic for ``seed`` and
    the key order, and independent streams for different groups.
    """
    return {
        key: bootstrap_ci(vals, n_resamples=n_resamples, seed=_group_seed(seed, i), level=level)
        for i, (key, vals) in enumerate(table.items())
    }


def paired_bootstrap_pvalue(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 1,
) -> tuple[float, float]:
    """Two-sided paired bootstrap test of ``mean(a - b) == 0`` (shift method).

    Only pairs where both ``a[i]`` and ``b[i]`` are finite are used. With ``d = a - b`` and
    ``m = mean(d)``, ``d`` is resampled with replacement ``n_resamples`` times (generator
    ``numpy.random.Generator(PCG64(seed))``) and
    ``p = (1 + #{|mean(d*) - m| >= |m|}) / (1 + n_resamples)``.

    Returns:
        ``(m, p)``; ``(nan, nan)`` when fewer than 2 usable pairs remain.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, are not 1-D, or ``n_resamples < 1``.
    """
    _check_n_resamples(n_resamples)
    xa = _as_1d(a, "a")
    xb = _as_1d(b, "b")
    if xa.size != xb.size:
        raise ValueError(f"a and b must have equal length, got {xa.size} and {xb.size}")
    ok = np.isfinite(xa) & np.isfinite(xb)
    d = xa[ok] - xb[ok]
    if d.size < 2:
        return math.nan, math.nan
    m = float(d.mean())
    rng = np.random.Generator(np.random.PCG64(seed))
    means = _resample_means(d, int(n_resamples), rng)
    extreme = int(np.count_nonzero(np.abs(means - m) >= abs(m)))
    return m, (1.0 + extreme) / (1.0 + n_resamples)


def disattenuated_ci(
    r: Sequence[float] | np.ndarray,
    reliability: Sequence[float] | np.ndarray,
    n_resamples: int = 0,
    seed: int = 1,
    level: float = 0.95,
) -> Interval:
    """``mean(r) / sqrt(mean(reliability))`` over the utterances where both are finite, with its
    percentile bootstrap interval (utterances resampled; ``n_resamples`` 0: no interval, low and
    high NaN).  The estimate is NaN when the mean reliability is not positive; a resample whose
    mean reliability is not positive is left out of the interval."""
    xr = _as_1d(r, "r")
    xq = _as_1d(reliability, "reliability")
    if xr.size != xq.size:
        raise ValueError(f"r and reliability must have equal length, got {xr.size} and {xq.size}")
    ok = np.isfinite(xr) & np.isfinite(xq)
    xr, xq = xr[ok], xq[ok]
    n = int(xr.size)
    if n == 0 or xq.mean() <= 0:
        return Interval(math.nan, math.nan, math.nan, n)
    estimate = float(xr.mean() / math.sqrt(xq.mean()))
    if n_resamples <= 0 or n == 1:
        low = high = estimate if n == 1 else math.nan
        return Interval(estimate, low, high, n)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, n, size=(int(n_resamples), n))
    mean_q = xq[idx].mean(axis=1)
    good = mean_q > 0
    ratios = xr[idx].mean(axis=1)[good] / np.sqrt(mean_q[good])
    if ratios.size == 0:
        return Interval(estimate, math.nan, math.nan, n)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return Interval(estimate, float(low), float(high), n)
