"""What the claims check (:mod:`caspes.report.claims`) is computed from: the paper's own tables, this
study's per-utterance files, and the paired bootstrap tests on them.

* :data:`PAPER_TABLES` transcribes the paper's Tables 1-4 and 6 and the Discussion's deletion figures
  (``../shared/seed/``); every paper figure the claims print is derived from them
  (:func:`paper_settings`), never typed in as a summary.
* :class:`StudyData` holds this study's per-utterance correlations (per run, map, pooling, layer,
  head; with the map's reliability where the correlation files carry it), the re-decoded deletion
  hypotheses with their references, and the per-utterance timestamp errors.
* :func:`paired_test` / :func:`bound_test` (correlations, timestamp errors) and
  :func:`deletion_test` (deletion AUCs) are the paired bootstrap tests: utterances resampled
  together, the shift method of :func:`caspes.analysis.bootstrap.paired_bootstrap_pvalue`, a seed per
  test derived from the study's seed and the test's name (:func:`test_seed`), so results are
  deterministic and one test's seed does not depend on which other tests run.

Deletion AUCs are corpus-level scores (wer_max or BLEU at each step, trapezoid over the steps), so
their bootstrap resamples utterances and recomputes the corpus scores from per-utterance sufficient
statistics (word edits and reference words for wer_max; sacrebleu's n-gram counts for BLEU): exactly
:func:`caspes.decode.metrics.wer_max` / :func:`~caspes.decode.metrics.bleu` and
:func:`caspes.explain.deletion.auc` on the full set.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU

from caspes.analysis.bootstrap import paired_bootstrap_pvalue
from caspes.report.results import read_correlations, read_tsv, run_of

__all__ = [
    "PAPER_TABLES",
    "PaperSetting",
    "paper_settings",
    "RunKey",
    "StudyData",
    "load_study",
    "TestOutcome",
    "test_seed",
    "paired_test",
    "bound_test",
    "DeletionRun",
    "deletion_test",
    "corpus_scores",
]


# --------------------------------------------------------------------------- the paper's tables
#: The paper's tables as printed (EuroParl-ST). Table 1: base, layer x head grid (rows l1..l6, the
#: last entry of each row is h-AVG; ``l-AVG`` is the head row averaged over layers, its last entry
#: the all-average). Tables 2 and 3: (model, direction) -> (layers, l-AVG); Table 2 has no base row
#: (its base figures are Table 1's). Table 4 (base, dev): pooling -> (l-AVG, ASR deletion). Table 6
#: (base, dev): p_H -> (l-AVG, ASR deletion). Discussion (base, test): deletion of CA, SM^X 2D max
#: to T', full-resolution SM^X.
PAPER_TABLES: dict = {
    "table1": {
        "l1": [0.076, -0.021, 0.096, 0.037, 0.042, 0.053, -0.020, 0.094, 0.111],
        "l2": [0.013, 0.122, 0.039, 0.171, 0.123, 0.089, 0.119, 0.041, 0.178],
        "l3": [0.455, 0.404, 0.348, 0.386, 0.263, 0.136, 0.248, 0.246, 0.443],
        "l4": [0.452, 0.344, 0.227, 0.405, 0.314, 0.512, 0.414, 0.495, 0.546],
        "l5": [0.508, 0.463, 0.466, 0.521, 0.518, 0.374, 0.502, 0.485, 0.578],
        "l6": [0.377, 0.394, 0.508, 0.386, 0.517, 0.371, 0.424, 0.322, 0.588],
        "l-AVG": [0.546, 0.456, 0.455, 0.574, 0.529, 0.541, 0.525, 0.500, 0.577],
    },
    "table2": {
        ("small", "en-en"): ([0.142, 0.205, 0.428, 0.639, 0.639, 0.614], 0.633),
        ("large", "en-en"): ([0.151, 0.162, 0.214, 0.320, 0.289, 0.434, 0.581, 0.597, 0.611, 0.597, 0.551,
                              0.561], 0.621),
        ("small", "it-en"): ([0.147, 0.193, 0.327, 0.476, 0.482, 0.465], 0.485),
        ("large", "it-en"): ([0.151, 0.164, 0.223, 0.300, 0.285, 0.383, 0.451, 0.467, 0.461, 0.461, 0.430,
                              0.431], 0.492),
        ("small", "en-it"): ([0.173, 0.203, 0.344, 0.547, 0.550, 0.539], 0.549),
        ("large", "en-it"): ([0.168, 0.176, 0.235, 0.300, 0.306, 0.413, 0.514, 0.526, 0.529, 0.529, 0.513,
                              0.516], 0.551),
        ("small", "it-it"): ([0.145, 0.209, 0.374, 0.527, 0.532, 0.525], 0.539),
        ("large", "it-it"): ([0.169, 0.157, 0.215, 0.324, 0.297, 0.407, 0.501, 0.503, 0.516, 0.518, 0.479,
                              0.482], 0.544),
    },
    "table3": {
        ("base", "en-en"): ([0.105, 0.179, 0.602, 0.708, 0.745, 0.693], 0.752),
        ("small", "en-en"): ([0.137, 0.220, 0.492, 0.712, 0.704, 0.664], 0.706),
        ("large", "en-en"): ([0.161, 0.143, 0.224, 0.352, 0.316, 0.476, 0.651, 0.695, 0.697, 0.699, 0.629,
                              0.641], 0.718),
        ("small", "it-en"): ([0.140, 0.196, 0.362, 0.502, 0.495, 0.467], 0.519),
        ("large", "it-en"): ([0.131, 0.128, 0.207, 0.304, 0.287, 0.407, 0.511, 0.553, 0.541, 0.545, 0.491,
                              0.509], 0.633),
        ("small", "en-it"): ([0.176, 0.235, 0.439, 0.655, 0.650, 0.606], 0.659),
        ("large", "en-it"): ([0.184, 0.160, 0.241, 0.348, 0.357, 0.484, 0.637, 0.667, 0.661, 0.668, 0.625,
                              0.625], 0.683),
        ("small", "it-it"): ([0.133, 0.199, 0.397, 0.579, 0.588, 0.555], 0.594),
        ("large", "it-it"): ([0.152, 0.119, 0.187, 0.322, 0.303, 0.423, 0.560, 0.605, 0.606, 0.619, 0.573,
                              0.565], 0.573),
    },
    "table4": {"avg2d": (0.459, 53.03), "max1d_avg1d": (0.565, 55.18), "max2d": (0.572, 57.04)},
    "table6": {0.9: (0.741, 58.20), 0.7: (0.746, 61.45), 0.5: (0.700, 57.30), 0.3: (0.614, 50.45),
               0.1: (0.543, 44.34)},
    "discussion": {"ca": 41.2, "smx-max2d": 52.9, "smx": 91.3},
}  # fmt: skip


@dataclass(frozen=True)
class PaperSetting:
    """One layer-wise setting of the paper's Tables 1-3: a model, direction and saliency map
    (``smx`` or ``smh``), its head-averaged r per layer and its all-average."""

    model: str
    direction: str
    saliency: str
    layers: list[float]
    all_average: float


def paper_settings() -> list[PaperSetting]:
    """The paper's 18 layer-wise settings: SM^X of Table 1 (base) and Table 2, SM^H of Table 3."""
    t1 = PAPER_TABLES["table1"]
    out = [PaperSetting("base", "en-en", "smx", [t1[f"l{k}"][-1] for k in range(1, 7)], t1["l-AVG"][-1])]
    for (model, direction), (layers, avg) in PAPER_TABLES["table2"].items():
        out.append(PaperSetting(model, direction, "smx", layers, avg))
    for (model, direction), (layers, avg) in PAPER_TABLES["table3"].items():
        out.append(PaperSetting(model, direction, "smh", layers, avg))
    return out


# --------------------------------------------------------------------------- this study's files
@dataclass(frozen=True)
class RunKey:
    """A run: model, direction (``src-tgt``) and split."""

    model: str
    direction: str
    split: str

    @property
    def label(self) -> str:
        return f"{self.model} {self.direction}"

    @property
    def task(self) -> str:
        src, tgt = self.direction.split("-")
        return "asr" if src == tgt else "st"


@dataclass
class DeletionRun:
    """The re-decoded hypotheses of one deletion curve: ``hyps[percent][utterance]``, the steps in
    order, and the metric (``wer_max`` or ``bleu``)."""

    metric: str
    percents: list[float]
    hyps: dict[float, dict[str, str]]
    auc: float = math.nan


@dataclass
class StudyData:
    """This study's per-utterance inputs of the claims check.

    ``correlations[(run, map)]``: a correlation file (utterance, pooling, layer, head, r[, reliability]);
    ``deletions[(run, dmap)]``: :class:`DeletionRun`; ``references[run]``: utterance -> reference;
    ``timestamps[run]``: per-utterance timestamp errors (utterance, map, method, start_ms, ...).
    """

    correlations: dict[tuple[RunKey, str], pd.DataFrame] = field(default_factory=dict)
    deletions: dict[tuple[RunKey, str], DeletionRun] = field(default_factory=dict)
    references: dict[RunKey, dict[str, str]] = field(default_factory=dict)
    timestamps: dict[RunKey, pd.DataFrame] = field(default_factory=dict)

    def runs(self, split: str) -> list[RunKey]:
        """Runs of a split with correlations, in the order first seen."""
        seen: dict[RunKey, None] = {}
        for run, _ in self.correlations:
            if run.split == split:
                seen.setdefault(run, None)
        return list(seen)

    def values(self, run: RunKey, name: str, pooling: str, layer: str, head: str) -> pd.Series | None:
        """Per-utterance r of one selection (indexed by utterance), None when the file is absent."""
        corr = self.correlations.get((run, name))
        if corr is None:
            return None
        sel = corr[(corr["pooling"] == pooling) & (corr["layer"] == layer) & (corr["head"] == head)]
        return sel.set_index("utterance")["r"].astype(float)

    def layers(self, run: RunKey, name: str, pooling: str) -> list[str]:
        """The decoder layers of a correlation file, in order (``"1"``, ``"2"``, ...)."""
        corr = self.correlations.get((run, name))
        if corr is None:
            return []
        sel = corr[(corr["pooling"] == pooling) & (corr["layer"] != "avg")]
        return sorted(set(sel["layer"]), key=int)

    def heads(self, run: RunKey, name: str, pooling: str) -> list[str]:
        corr = self.correlations.get((run, name))
        if corr is None:
            return []
        sel = corr[(corr["pooling"] == pooling) & (corr["head"] != "avg")]
        return sorted(set(sel["head"]), key=int)

    def reliability(self, run: RunKey, name: str, pooling: str) -> float | None:
        """Mean over utterances of the map's Spearman-Brown reliability (column ``reliability`` of
        the correlation file, one value per utterance and pooling); None when unknown (no such
        column, or NaN for every utterance)."""
        corr = self.correlations.get((run, name))
        if corr is None or "reliability" not in corr.columns:
            return None
        sel = corr[corr["pooling"] == pooling]
        per_utt = pd.to_numeric(sel["reliability"], errors="coerce").groupby(sel["utterance"]).first()
        per_utt = per_utt[np.isfinite(per_utt)]
        return float(per_utt.mean()) if len(per_utt) else None


def _run_key(path: str | Path) -> tuple[RunKey, str]:
    run = run_of(path)
    name = run.name[: -len(".hyps")] if run.name.endswith(".hyps") else run.name
    return RunKey(run.model, run.direction, run.split), name


def load_study(
    correlations: Sequence[str | Path] = (),
    deletion_curves: Sequence[str | Path] = (),
    deletion_hyps: Sequence[str | Path] = (),
    references: Sequence[str | Path] = (),
    timestamps: Sequence[str | Path] = (),
) -> StudyData:
    """Read the claims check's inputs, each file once: correlation files (rule ``correlate``),
    deletion curves and their re-decoded hypotheses (``deletion/<dmap>.tsv`` / ``.hyps.tsv``, paired
    by run and map), the runs' ``hyps.tsv`` (references) and ``timestamps.tsv`` files."""
    data = StudyData()
    for path in correlations:
        data.correlations[_run_key(path)] = read_correlations(path)
    for path in references:
        run, _ = _run_key(path)  # <run>/hyps.tsv
        refs = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        data.references[run] = dict(zip(refs["id"], refs["reference"]))
    curves = {_run_key(p): read_tsv(p) for p in deletion_curves}
    for path in deletion_hyps:
        key = _run_key(path)
        curve = curves.get(key)
        if curve is None:
            raise ValueError(f"{path}: no deletion curve of that run and map among the inputs")
        hyps = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        percents = [float(p) for p in curve["percent"]]
        by_step = {float(p): dict(zip(g["id"], g["hypothesis"])) for p, g in hyps.groupby("percent")}
        data.deletions[key] = DeletionRun(
            str(curve["metric"].iloc[0]), percents, by_step, float(curve["auc"].iloc[0])
        )
    for path in timestamps:
        run, _ = _run_key(path)  # <run>/timestamps.tsv
        data.timestamps[run] = read_tsv(path)
    return data


# --------------------------------------------------------------------------- tests
@dataclass(frozen=True)
class TestOutcome:
    """A paired bootstrap test: the estimate (mean difference, or a deletion AUC difference in the
    "better" direction), the p value (two-sided, shift method) and the number of utterances used."""

    estimate: float
    p: float
    n: int


def test_seed(seed: int, name: str) -> int:
    """The seed of one test: ``SeedSequence([seed, crc32(name)])``'s first word."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))]).generate_state(1)[0])


def _aligned(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values of the utterances both series have, both finite (in ``a``'s order)."""
    common = [u for u in a.index if u in b.index]
    x = a.reindex(common).to_numpy(dtype=float)
    y = b.reindex(common).to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def paired_test(a: pd.Series, b: pd.Series, resamples: int, seed: int, shift: float = 0.0) -> TestOutcome:
    """Paired bootstrap test of ``mean(a - b) == shift`` over the utterances both have (finite).

    Returns the estimate ``mean(a - b)`` (not shifted), the p value of its difference from ``shift``
    and the number of pairs; p is NaN with fewer than 2 pairs.
    """
    x, y = _aligned(a, b)
    if x.size < 2:
        return TestOutcome(float(np.mean(x - y)) if x.size else math.nan, math.nan, int(x.size))
    m, p = paired_bootstrap_pvalue(x - shift, y, resamples, seed)
    return TestOutcome(m + shift, p, int(x.size))


def bound_test(a: pd.Series, bound: float, resamples: int, seed: int) -> TestOutcome:
    """Bootstrap test of ``mean(a) == bound`` (finite values): estimate ``mean(a)``."""
    return paired_test(a, pd.Series(0.0, index=a.index), resamples, seed, bound)


def _wer_stats(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """(utterances, 2): word edits and reference words, as :func:`caspes.decode.metrics.wer_max` counts."""
    return np.array(
        [[Levenshtein.distance(r.split(), h.split()), len(r.split())] for h, r in zip(hyps, refs)],
        dtype=float,
    ).reshape(-1, 2)


def _wer_from_stats(stats: np.ndarray) -> np.ndarray:
    """wer_max of summed stats (..., 2)."""
    edits, words = stats[..., 0], stats[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.minimum(100.0, 100.0 * edits / words)
    return np.where(words > 0, score, np.where(edits > 0, 100.0, 0.0))


_BLEU = BLEU()


def _bleu_stats(hyps: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """(utterances, 2 + 2 * order): sacrebleu's sufficient statistics per sentence (hypothesis and
    reference length, matching and total n-grams), the counts its corpus BLEU sums."""
    stats = _BLEU._extract_corpus_statistics(list(hyps), [list(refs)])  # sacrebleu 2.x
    return np.asarray(stats, dtype=float).reshape(len(hyps), -1)


def _bleu_from_stats(stats: np.ndarray) -> np.ndarray:
    """Corpus BLEU (sacrebleu's defaults: exp smoothing, order 4) of summed stats (..., 10)."""
    flat = stats.reshape(-1, stats.shape[-1])
    order = _BLEU.max_ngram_order
    out = np.empty(flat.shape[0])
    for k, s in enumerate(flat):
        ints = [int(round(v)) for v in s]
        out[k] = BLEU.compute_bleu(
            ints[2 : 2 + order], ints[2 + order :], ints[0], ints[1], smooth_method=_BLEU.smooth_method,
            max_ngram_order=order,
        ).score  # fmt: skip
    return out.reshape(stats.shape[:-1])


def _step_stats(run: DeletionRun, ids: Sequence[str], refs: Mapping[str, str]) -> np.ndarray:
    """(steps, utterances, stats) of one deletion curve on ``ids``."""
    fn = _wer_stats if run.metric == "wer_max" else _bleu_stats
    return np.stack([fn([run.hyps[p][u] for u in ids], [refs[u] for u in ids]) for p in run.percents])


def _auc(scores: np.ndarray, percents: Sequence[float]) -> np.ndarray:
    """Trapezoid over percents / 100 along the last axis (:func:`caspes.explain.deletion.auc`)."""
    x = np.asarray(percents, dtype=float) / 100.0
    return np.sum((scores[..., 1:] + scores[..., :-1]) * np.diff(x), axis=-1) / 2.0


def corpus_scores(run: DeletionRun, ids: Sequence[str], refs: Mapping[str, str]) -> tuple[list[float], float]:
    """The corpus score at each step and the AUC of a deletion curve on ``ids`` (what the deletion
    rule computes on its utterances)."""
    stats = _step_stats(run, ids, refs).sum(axis=1)
    score = _wer_from_stats(stats) if run.metric == "wer_max" else _bleu_from_stats(stats)
    return [float(s) for s in score], float(_auc(score, run.percents))


def deletion_test(
    a: DeletionRun, b: DeletionRun, refs: Mapping[str, str], resamples: int, seed: int
) -> TestOutcome:
    """Paired bootstrap test of deletion AUC ``a`` vs ``b`` on the utterances both curves and the
    references have: the estimate is ``AUC(a) - AUC(b)`` signed so that positive means ``a`` is the
    better explanation (wer_max: higher AUC; BLEU: lower), and
    ``p = (1 + #{|Δ* - Δ| >= |Δ|}) / (1 + B)`` over ``B`` resamples of the utterances (the same
    resample for both curves), as :func:`caspes.analysis.bootstrap.paired_bootstrap_pvalue`."""
    if a.metric != b.metric or a.percents != b.percents:
        raise ValueError("deletion curves of different metrics or steps cannot be compared")
    ids = [u for u in a.hyps.get(a.percents[0], {}) if u in refs and all(
        u in a.hyps.get(p, {}) and u in b.hyps.get(p, {}) for p in a.percents)]  # fmt: skip
    sign = 1.0 if a.metric == "wer_max" else -1.0
    if len(ids) < 2:
        return TestOutcome(math.nan, math.nan, len(ids))
    sa, sb = _step_stats(a, ids, refs), _step_stats(b, ids, refs)  # (steps, utts, stats)
    score = _wer_from_stats if a.metric == "wer_max" else _bleu_from_stats
    observed = sign * float(_auc(score(sa.sum(axis=1)), a.percents) - _auc(score(sb.sum(axis=1)), b.percents))
    rng = np.random.Generator(np.random.PCG64(seed))
    idx = rng.integers(0, len(ids), size=(resamples, len(ids)))
    counts = np.stack([np.bincount(row, minlength=len(ids)) for row in idx]).astype(float)  # (B, utts)
    ra = score(np.einsum("bu,sun->bsn", counts, sa))
    rb = score(np.einsum("bu,sun->bsn", counts, sb))
    deltas = sign * (_auc(ra, a.percents) - _auc(rb, b.percents))
    extreme = int(np.count_nonzero(np.abs(deltas - observed) >= abs(observed)))
    return TestOutcome(observed, (1.0 + extreme) / (1.0 + resamples), len(ids))
