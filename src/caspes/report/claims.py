"""The claims check: each of the paper's claims, tested as the paper states it on this study's
per-utterance results, with one of three verdicts and its reason.

Every claim is a set of **settings** (a run and map, a layer, ...), each tested by one or more paired
bootstrap **tests** over utterances (:mod:`caspes.report.claims_data`). A test

* is **inconclusive** when it has fewer than ``min_utterances`` utterances ("too few utterances"),
  when a saliency map it rests on has a mean reliability below its threshold ("unconverged maps":
  the Spearman-Brown full-budget reliability of the correlation files, SM^X ``smx*`` 0.9, SM^H
  ``smh*`` 0.95 by default; a file without the column, or NaN, is "reliability unknown" and does not
  block a verdict, the CSV says so), or when ``p >= alpha`` (0.05);
* otherwise **holds** when the estimate lies on the claimed side and **does not hold** when it lies
  significantly on the other.

A setting holds when all its tests hold, does not hold when one does not, and is inconclusive
otherwise. A claim holds when at least the share of its settings that hold *in the paper's own
tables* holds here (all of them, except claim 2: 5 of 6 layers in Table 1), does not hold when so
many settings do not hold that this share cannot be reached, and is inconclusive otherwise (with the
reasons of its inconclusive settings). Claims the study cannot check (no such runs) are left out.

The paper's figures are derived from its tables (:data:`~caspes.report.claims_data.PAPER_TABLES`);
a range is tested with both bounds, each the wider of the text's rounded figure and the tables'
envelope. Choices the paper leaves open, and the one taken:

1. *Last layers* (§5.1.1, §5.1.2, §5.2): last minus first decoder layer (heads averaged) > 0, in
   every layer-wise setting (SM^X and SM^H of every main-split run with ≥ 2 layers).
2. *Head average* (§5.1.1, Table 1): per layer of the ablation model (SM^X, main split), h-AVG >
   the layer's best single head, the head chosen on the selection split (``dev``) and tested on the
   main split; without dev correlations, h-AVG must beat every head.
3. *All-average near-best* (§5.1.2, §5.2): l-AVG is not worse than the best layer (chosen on dev,
   tested on test; every layer without dev) by more than the paper's largest shortfall in its
   tables (0.046, Table 3): a non-inferiority test of ``l-AVG - best > -0.046``; and, as §5.1.2 says
   "with moderate to strong correlation", l-AVG r above the weakest l-AVG of the paper's tables
   (SM^X 0.485, SM^H 0.519), so that maps uncorrelated at every layer are not "near-best".
4. *SM^H above SM^X* (§5.2): ``r(CA, SM^H) - r(CA, SM^X)`` of the all-average within
   [0.029, 0.18] (text 0.03-0.18; tables 0.029-0.175), both bounds, per main-split run.
5. *Half explanation* (§5.1.2): l-AVG r with SM^X within [0.485, 0.633] (text 49-63%).
6. *SM^H partial* (§5.2): l-AVG r with SM^H within [0.519, 0.752] (text 52-75%).
7. *2D max pooling* (App. A, Table 4): on the ablation split, 2D max above 2D avg and above 1D max +
   1D avg, in l-AVG r and in deletion.
8. *p_H = 0.7* (App. D, Table 6): on the ablation split, p_H 0.7 above every other p_H of the grid, in
   l-AVG r (SM^H) and in deletion (the paper's 0.7, whatever p_H the study uses).
9. *Deletion ranking* (§6): per main-split run of the ablation model, deletion of SM^X pooled to T'
   better than CA's, and full-resolution SM^X better than pooled.
10. *Timestamps* (beyond the paper; §6 suggests it): CA of all layers and heads has a lower DTW
    word-start error than the best single layer (chosen on dev where the study has dev timestamps,
    else every layer), per ASR run.

Deletion follows the metric: a higher wer_max AUC (ASR) and a lower BLEU AUC (ST) is the better
explanation. :func:`write_claims` is the rule ``claims_check``: ``claims.md`` (one line per claim)
and ``claims.csv`` (every test and every claim's verdict).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from caspes.core.atomic import atomic_open, atomic_write_text
from caspes.report.claims_data import (
    PAPER_TABLES,
    RunKey,
    StudyData,
    TestOutcome,
    bound_test,
    deletion_test,
    load_study,
    paired_test,
    paper_settings,
    test_seed,
)

__all__ = [
    "HOLDS",
    "DOES_NOT_HOLD",
    "INCONCLUSIVE",
    "ClaimOptions",
    "TestRow",
    "Claim",
    "CLAIMS",
    "claims_check",
    "claims_markdown",
    "claims_table",
    "write_claims",
]

log = logging.getLogger(__name__)

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"

#: The paper's p_H (Table 6, App. D: "the best values achieved with p_H = 0.7").
PAPER_P_H = 0.7


@dataclass(frozen=True)
class ClaimOptions:
    """How the claims are tested (the rule's params; config ``analysis.claims`` and ``bootstrap``)."""

    resamples: int = 1000
    seed: int = 1
    alpha: float = 0.05
    min_utterances: int = 10
    reliability_smx: float = 0.9
    reliability_smh: float = 0.95
    pooling: str = "max2d"
    main_split: str = "test"
    selection_split: str = "dev"
    ablation_model: str | None = "base"
    p_h: float = 0.7

    @property
    def smh(self) -> str:
        """The study's SM^H map name (``smh-p<p_H>``)."""
        return f"smh-p{self.p_h:g}"

    def threshold(self, name: str) -> float:
        """The reliability threshold of a map (by name: ``smx...`` or ``smh...``)."""
        return self.reliability_smx if name.startswith("smx") else self.reliability_smh


@dataclass
class TestRow:
    """One test of one setting of a claim (a row of ``claims.csv``)."""

    claim: int
    setting: str
    test: str
    estimate: float
    n: int
    p: float
    reliability: str
    verdict: str
    reason: str


@dataclass
class Claim:
    """A claim: what the paper states, its figure derived from its tables, this study's figures, and
    the verdict with its reason; ``tests`` the rows behind it."""

    number: int
    claim: str
    paper: str
    ours: str
    verdict: str
    reason: str
    tests: list[TestRow] = field(default_factory=list)


# --------------------------------------------------------------------------- verdicts
def _fmt(x: float, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


@dataclass
class _Ctx:
    """What every claim function needs: the data, the options and the claim's number."""

    data: StudyData
    opts: ClaimOptions
    number: int = 0


def _reliability(ctx: _Ctx, maps: Sequence[tuple[RunKey, str, str]]) -> tuple[str, str | None]:
    """The maps' mean reliabilities as text, and the reason to stop ("unconverged maps") if one is
    below its threshold."""
    parts, low = [], []
    for run, name, pooling in maps:
        rel = ctx.data.reliability(run, name, pooling)
        label = name.split("-p")[0] if name.startswith("smh") else name
        parts.append(f"{label} {'unknown' if rel is None else f'{rel:.3f}'}")
        if rel is not None and rel < ctx.opts.threshold(name):
            low.append(f"{label} {rel:.3f} < {ctx.opts.threshold(name):g}")
    return "; ".join(dict.fromkeys(parts)), (f"unconverged maps ({', '.join(low)})" if low else None)


def _test(
    ctx: _Ctx,
    setting: str,
    name: str,
    outcome: TestOutcome,
    maps: Sequence[tuple[RunKey, str, str]],
    above: float | None = None,
    below: float | None = None,
) -> TestRow:
    """One test's verdict: the claim is ``estimate > above`` (or ``estimate < below``)."""
    rel, unconverged = _reliability(ctx, maps)
    opts = ctx.opts
    target = above if above is not None else below
    assert target is not None
    row = TestRow(ctx.number, setting, name, outcome.estimate, outcome.n, outcome.p, rel, INCONCLUSIVE, "")
    if outcome.n < opts.min_utterances:
        row.reason = f"too few utterances ({outcome.n} < {opts.min_utterances})"
    elif unconverged:
        row.reason = unconverged
    elif opts.resamples < 1:
        row.reason = "no bootstrap (analysis.bootstrap.resamples: 0)"
    elif math.isnan(outcome.p) or math.isnan(outcome.estimate):
        row.reason = "undefined (constant maps)"
    elif outcome.p >= opts.alpha:
        row.reason = f"p = {outcome.p:.3g} ≥ {opts.alpha:g}"
    else:
        claimed = outcome.estimate > target if above is not None else outcome.estimate < target
        row.verdict = HOLDS if claimed else DOES_NOT_HOLD
        row.reason = f"p = {outcome.p:.3g}"
    return row


def _seed(ctx: _Ctx, name: str) -> int:
    return test_seed(ctx.opts.seed, f"claim {ctx.number}: {name}")


def _paired(
    ctx: _Ctx, setting: str, name: str, a, b, maps, shift: float = 0.0, above: bool = True
) -> TestRow:
    """``a - b`` against ``shift``: above it (or below with ``above=False``)."""
    if a is None or b is None:
        return _test(ctx, setting, name, TestOutcome(math.nan, math.nan, 0), maps, above=shift)
    res = (paired_test(a, b, ctx.opts.resamples, _seed(ctx, f"{setting} {name}"), shift)
           if ctx.opts.resamples > 0 else _no_bootstrap(a, b))  # fmt: skip
    return (
        _test(ctx, setting, name, res, maps, above=shift)
        if above
        else _test(ctx, setting, name, res, maps, below=shift)
    )


def _no_bootstrap(a: pd.Series, b: pd.Series) -> TestOutcome:
    common = [u for u in a.index if u in b.index]
    d = (a.reindex(common) - b.reindex(common)).dropna()
    return TestOutcome(float(d.mean()) if len(d) else math.nan, math.nan, len(d))


def _range(ctx: _Ctx, setting: str, what: str, a, low: float, high: float, maps) -> list[TestRow]:
    """Both bounds of a range claim on the mean of ``a``."""
    rows = []
    for bound, above in ((low, True), (high, False)):
        name = f"{what} {'>' if above else '<'} {bound:.3f}"
        if ctx.opts.resamples > 0:
            res = bound_test(a, bound, ctx.opts.resamples, _seed(ctx, f"{setting} {name}"))
        else:
            res = _no_bootstrap(a, pd.Series(0.0, index=a.index))
        rows.append(_test(ctx, setting, name, res, maps, **({"above": bound} if above else {"below": bound})))
    return rows


def _setting_verdict(rows: Sequence[TestRow]) -> tuple[str, str]:
    if any(r.verdict == DOES_NOT_HOLD for r in rows):
        return DOES_NOT_HOLD, next(f"{r.test}: {r.reason}" for r in rows if r.verdict == DOES_NOT_HOLD)
    if rows and all(r.verdict == HOLDS for r in rows):
        return HOLDS, ""
    return INCONCLUSIVE, next((r.reason for r in rows if r.verdict == INCONCLUSIVE), "no test")


def _claim(
    ctx: _Ctx, text: str, paper: str, settings: Mapping[str, list[TestRow]], ours: str, share: float = 1.0
) -> list[Claim]:
    """A claim's verdict from its settings (see the module docstring); none without settings."""
    if not settings:
        return []
    verdicts = {s: _setting_verdict(rows) for s, rows in settings.items()}
    n = len(verdicts)
    need = max(1, math.ceil(share * n - 1e-9))
    holds = sum(v == HOLDS for v, _ in verdicts.values())
    fails = sum(v == DOES_NOT_HOLD for v, _ in verdicts.values())
    count = f"{holds}/{n} settings hold" + (f" (need {need})" if need < n else "")
    if holds >= need:
        verdict, reason = HOLDS, count
    elif fails > n - need:
        first = next(f"{s}: {r}" for s, (v, r) in verdicts.items() if v == DOES_NOT_HOLD)
        verdict, reason = DOES_NOT_HOLD, f"{count}; {first}"
    else:
        reasons = [r for v, r in verdicts.values() if v == INCONCLUSIVE]
        kinds = dict.fromkeys(r.split(" (")[0] if r.startswith(("too few", "unconverged")) else
                              (f"p ≥ {ctx.opts.alpha:g}" if r.startswith("p = ") else r) for r in reasons)  # fmt: skip
        detail = reasons[0] if len(kinds) == 1 else ", ".join(kinds)
        verdict, reason = INCONCLUSIVE, f"{count}; {detail}"
    tests = [row for rows in settings.values() for row in rows]
    return [Claim(ctx.number, text, paper, ours, verdict, reason, tests)]


def _span(values: Sequence[float], sign: bool = True) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "–"
    lo, hi = min(vals), max(vals)
    return _fmt(lo, sign=sign) if lo == hi else f"{_fmt(lo, sign=sign)}…{_fmt(hi, sign=sign)}"


# --------------------------------------------------------------------------- settings of the study
def _maps(ctx: _Ctx, run: RunKey) -> list[tuple[str, str, str]]:
    """(map name, pooling, label) of the run's SM^X and SM^H correlation files."""
    out = []
    for name, pooling, label in ((("smx", ctx.opts.pooling, "SM^X")), (ctx.opts.smh, "none", "SM^H")):
        if (run, name) in ctx.data.correlations:
            out.append((name, pooling, label))
    return out


def _main_runs(ctx: _Ctx, model: str | None = None) -> list[RunKey]:
    return [r for r in ctx.data.runs(ctx.opts.main_split) if model is None or r.model == model]


def _selection_run(ctx: _Ctx, run: RunKey) -> RunKey:
    return replace(run, split=ctx.opts.selection_split)


def _best_on_dev(ctx: _Ctx, run: RunKey, name: str, pooling: str, candidates: dict[str, tuple[str, str]]):
    """The candidates (label -> (layer, head)) to test against: the one with the highest mean r on
    the selection split, or all of them when that split has no correlations for this run and map."""
    dev = _selection_run(ctx, run)
    if (dev, name) not in ctx.data.correlations or not candidates:
        return candidates, False
    means = {}
    for label, (layer, head) in candidates.items():
        v = ctx.data.values(dev, name, pooling, layer, head)
        means[label] = float(v.mean()) if v is not None and v.notna().any() else -math.inf
    best = max(means, key=means.get)
    return {best: candidates[best]}, True


# --------------------------------------------------------------------------- the claims
def last_layers_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 1: the last decoder layer correlates more than the first, in every layer-wise setting."""
    paper = [s.layers[-1] - s.layers[0] for s in paper_settings()]
    settings: dict[str, list[TestRow]] = {}
    for run in _main_runs(ctx):
        for name, pooling, label in _maps(ctx, run):
            layers = ctx.data.layers(run, name, pooling)
            if len(layers) < 2:
                continue
            a = ctx.data.values(run, name, pooling, layers[-1], "avg")
            b = ctx.data.values(run, name, pooling, layers[0], "avg")
            setting = f"{run.label} {label}"
            settings[setting] = [
                _paired(ctx, setting, f"l{layers[-1]} − l1 > 0", a, b, [(run, name, pooling)])
            ]
    est = [r.estimate for rows in settings.values() for r in rows]
    return _claim(
        ctx,
        "The last decoder layers correlate more with saliency than the first ones (§5.1, §5.2).",
        f"last − first {_span(paper)}, {sum(d > 0 for d in paper)}/{len(paper)} settings (Tables 1-3)",
        settings,
        f"last − first {_span(est)}",
    )


def head_average_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 2: each layer's head average beats its best single head (Table 1; best head on dev)."""
    t1 = PAPER_TABLES["table1"]
    layers = [k for k in t1 if k != "l-AVG"]
    above = [k for k in layers if t1[k][-1] > max(t1[k][:-1])]
    misses = [f"{k}: h{t1[k].index(max(t1[k][:-1])) + 1} {max(t1[k][:-1]):.3f} > {t1[k][-1]:.3f}"
              for k in layers if k not in above]  # fmt: skip
    share = len(above) / len(layers)
    settings: dict[str, list[TestRow]] = {}
    est = []
    for run in _main_runs(ctx, ctx.opts.ablation_model):
        name, pooling = "smx", ctx.opts.pooling
        if (run, name) not in ctx.data.correlations:
            continue
        heads = ctx.data.heads(run, name, pooling)
        if not heads:
            continue
        for layer in ctx.data.layers(run, name, pooling):
            candidates = {f"h{h}": (layer, h) for h in heads}
            chosen, on_dev = _best_on_dev(ctx, run, name, pooling, candidates)
            a = ctx.data.values(run, name, pooling, layer, "avg")
            setting = f"{run.label} l{layer}"
            rows = []
            for label, (lay, head) in chosen.items():
                b = ctx.data.values(run, name, pooling, lay, head)
                what = f"h-AVG − {label}{' (best on dev)' if on_dev else ''} > 0"
                rows.append(_paired(ctx, setting, what, a, b, [(run, name, pooling)]))
            settings[setting] = rows
            est += [r.estimate for r in rows]
    return _claim(
        ctx,
        "Averaging the heads of a layer beats selecting a single head of it (§5.1.1, Table 1).",
        f"h-AVG > best head in {len(above)}/{len(layers)} layers ({'; '.join(misses)})",
        settings,
        f"h-AVG − best head {_span(est)}",
        share,
    )


def _all_average_margin() -> float:
    return max(max(s.layers) - s.all_average for s in paper_settings())


def all_average_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 3: l-AVG is best or near-best, "with moderate to strong correlation" (§5.1.2): not below
    the best layer (dev-chosen) by more than the paper's largest shortfall, and above the weakest
    l-AVG r the paper's tables call moderate for that map (SM^X 0.485, SM^H 0.519) — without it,
    maps uncorrelated at every layer (r ≈ 0 throughout) would be "near-best" trivially."""
    gaps = [s.all_average - max(s.layers) for s in paper_settings()]
    weakest = {k: min(s.all_average for s in paper_settings() if s.saliency == k) for k in ("smx", "smh")}
    margin = round(_all_average_margin(), 3)
    settings: dict[str, list[TestRow]] = {}
    est = []
    for run in _main_runs(ctx):
        for name, pooling, label in _maps(ctx, run):
            layers = ctx.data.layers(run, name, pooling)
            if len(layers) < 2:
                continue
            chosen, on_dev = _best_on_dev(ctx, run, name, pooling, {f"l{k}": (k, "avg") for k in layers})
            a = ctx.data.values(run, name, pooling, "avg", "avg")
            setting = f"{run.label} {label}"
            maps = [(run, name, pooling)]
            rows = [
                _paired(ctx, setting, f"l-AVG − {lab}{' (best on dev)' if on_dev else ''} > −{margin:.3f}", a,
                        ctx.data.values(run, name, pooling, lay, head), maps, -margin)
                for lab, (lay, head) in chosen.items()
            ]  # fmt: skip
            est += [r.estimate for r in rows]
            low = weakest[name[:3]]
            rows += _range(ctx, setting, "l-AVG r", a, low, math.inf, maps)[:1] if a is not None else []
            settings[setting] = rows
    return _claim(
        ctx,
        "Averaging over layers and heads gives the best or near-best correlation, moderate to strong "
        "(§5.1.2, §5.2).",
        f"l-AVG − best layer {_span(gaps)}; best in {sum(g >= 0 for g in gaps)}/{len(gaps)}; l-AVG r ≥ "
        f"{weakest['smx']:.3f} (SM^X) / {weakest['smh']:.3f} (SM^H) (Tables 1-3)",
        settings,
        f"l-AVG − best layer {_span(est)}",
    )


def _paper_range(values: Sequence[float], text: tuple[float, float]) -> tuple[float, float]:
    """The wider of the text's range and the tables' envelope."""
    return min(min(values), text[0]), max(max(values), text[1])


def _smh_minus_smx() -> list[float]:
    x = {(s.model, s.direction): s.all_average for s in paper_settings() if s.saliency == "smx"}
    return [s.all_average - x[(s.model, s.direction)] for s in paper_settings()
            if s.saliency == "smh" and (s.model, s.direction) in x]  # fmt: skip


def smh_over_smx_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 4: r(CA, SM^H) - r(CA, SM^X) of the all-average within the paper's 0.03-0.18."""
    paper = _smh_minus_smx()
    low, high = _paper_range(paper, (0.03, 0.18))
    settings: dict[str, list[TestRow]] = {}
    for run in _main_runs(ctx):
        maps = {label: (name, pooling) for name, pooling, label in _maps(ctx, run)}
        if len(maps) < 2:
            continue
        (xn, xp), (hn, hp) = maps["SM^X"], maps["SM^H"]
        a, b = ctx.data.values(run, hn, hp, "avg", "avg"), ctx.data.values(run, xn, xp, "avg", "avg")
        both = [(run, xn, xp), (run, hn, hp)]
        setting = run.label
        settings[setting] = [
            _paired(ctx, setting, f"SM^H − SM^X > {low:.3f}", a, b, both, low),
            _paired(ctx, setting, f"SM^H − SM^X < {high:.3f}", a, b, both, high, above=False),
        ]
    est = [rows[0].estimate for rows in settings.values()]
    return _claim(
        ctx,
        "CA correlates more with SM^H than with SM^X, by 0.03 to 0.18 (context mixing; §5.2).",
        f"SM^H − SM^X {_span(paper)} in {len(paper)} settings (text 0.03-0.18; Tables 1-3)",
        settings,
        f"SM^H − SM^X {_span(est)}",
    )


def _all_average_range_claim(ctx: _Ctx, saliency: str, text: str, stated: tuple[float, float]) -> list[Claim]:
    paper = [s.all_average for s in paper_settings() if s.saliency == saliency]
    low, high = _paper_range(paper, stated)
    label = "SM^X" if saliency == "smx" else "SM^H"
    settings: dict[str, list[TestRow]] = {}
    for run in _main_runs(ctx):
        for name, pooling, lab in _maps(ctx, run):
            if lab != label:
                continue
            a = ctx.data.values(run, name, pooling, "avg", "avg")
            if a is not None:
                settings[run.label] = _range(ctx, run.label, "l-AVG r", a, low, high, [(run, name, pooling)])
    est = [rows[0].estimate for rows in settings.values()]
    return _claim(
        ctx,
        text,
        f"l-AVG r {_span(paper, False)} (text {stated[0]:.2f}-{stated[1]:.2f})",
        settings,
        f"l-AVG r {_span(est, False)}",
    )


def half_explanation_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 5: l-AVG r with SM^X within the paper's 49-63% (Tables 1-2)."""
    return _all_average_range_claim(
        ctx, "smx", "CA accounts for only 49-63% of the input relevance: l-AVG r with SM^X (§5.1.2).",
        (0.49, 0.63),
    )  # fmt: skip


def smh_partial_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 6: l-AVG r with SM^H within the paper's 52-75% (Table 3)."""
    return _all_average_range_claim(
        ctx,
        "smh",
        "Even against SM^H, CA captures only 52-75% of the relevance: l-AVG r (§5.2).",
        (0.52, 0.75),
    )


def _ablation_runs(ctx: _Ctx) -> list[RunKey]:
    return [r for r in ctx.data.runs(ctx.opts.selection_split) if r.model == ctx.opts.ablation_model]


def _deletion(ctx: _Ctx, run: RunKey, a: str, b: str, setting: str, maps) -> TestRow | None:
    """Deletion of map ``a`` better than of ``b`` (their AUCs, the metric's direction)."""
    da, db = ctx.data.deletions.get((run, a)), ctx.data.deletions.get((run, b))
    refs = ctx.data.references.get(run)
    if da is None or db is None or refs is None:
        return None
    name = f"deletion {a} better than {b}"
    if ctx.opts.resamples > 0:
        res = deletion_test(da, db, refs, ctx.opts.resamples, _seed(ctx, f"{setting} {name}"))
    else:
        res = TestOutcome((1 if da.metric == "wer_max" else -1) * (da.auc - db.auc), math.nan, len(refs))
    return _test(ctx, setting, name, res, maps, above=0.0)


def aggregation_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 7: 2D max pooling beats 2D avg and 1D max + 1D avg in l-AVG r and deletion (Table 4)."""
    t4 = PAPER_TABLES["table4"]
    others = ("avg2d", "max1d_avg1d")
    settings: dict[str, list[TestRow]] = {}
    est = []
    for run in _ablation_runs(ctx):
        if (run, "smx") not in ctx.data.correlations:
            continue
        best = ctx.data.values(run, "smx", "max2d", "avg", "avg")
        rows = []
        for other in others:
            maps = [(run, "smx", "max2d"), (run, "smx", other)]
            rows.append(_paired(ctx, run.label, f"r max2d − {other} > 0", best,
                                ctx.data.values(run, "smx", other, "avg", "avg"), maps))  # fmt: skip
            est.append(rows[-1].estimate)
            dele = _deletion(ctx, run, "smx-max2d", f"smx-{other}", run.label, maps)
            if dele is not None:
                rows.append(dele)
        settings[f"{run.label} {run.split}"] = rows
    return _claim(
        ctx,
        "2D max pooling of SM^X gives the highest l-AVG r and the best deletion (App. A, Table 4).",
        f"2D max r {t4['max2d'][0]:.3f} vs {t4['max1d_avg1d'][0]:.3f}/{t4['avg2d'][0]:.3f}, deletion "
        f"{t4['max2d'][1]:.2f} vs {t4['max1d_avg1d'][1]:.2f}/{t4['avg2d'][1]:.2f} (dev)",
        settings,
        f"r 2D max − other {_span(est)}",
    )


def p_h_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 8: p_H 0.7 gives the best l-AVG r (SM^H) and the best deletion of the grid (Table 6)."""
    t6 = PAPER_TABLES["table6"]
    rest = [p for p in t6 if p != PAPER_P_H]
    best = f"smh-p{PAPER_P_H:g}"
    settings: dict[str, list[TestRow]] = {}
    est = []
    for run in _ablation_runs(ctx):
        grid = [n for (r, n) in ctx.data.correlations if r == run and n.startswith("smh-p") and n != best]
        if (run, best) not in ctx.data.correlations or not grid:
            continue
        a = ctx.data.values(run, best, "none", "avg", "avg")
        rows = []
        for other in sorted(grid, key=lambda n: -float(n[5:])):
            maps = [(run, best, "none"), (run, other, "none")]
            rows.append(_paired(ctx, run.label, f"r p{PAPER_P_H:g} − p{other[5:]} > 0", a,
                                ctx.data.values(run, other, "none", "avg", "avg"), maps))  # fmt: skip
            est.append(rows[-1].estimate)
            dele = _deletion(ctx, run, best, other, run.label, maps)
            if dele is not None:
                rows.append(dele)
        settings[f"{run.label} {run.split}"] = rows
    return _claim(
        ctx,
        "p_H = 0.7 gives both the best deletion and the best CA-SM^H correlation (App. D, Table 6).",
        f"p_H 0.7: r {t6[PAPER_P_H][0]:.3f} vs ≤ {max(t6[p][0] for p in rest):.3f}, deletion "
        f"{t6[PAPER_P_H][1]:.2f} vs ≤ {max(t6[p][1] for p in rest):.2f} (dev)",
        settings,
        f"r p0.7 − other {_span(est)}",
    )


def deletion_ranking_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 9: deletion ranks CA below SM^X pooled to T' below full-resolution SM^X (Discussion)."""
    d = PAPER_TABLES["discussion"]
    settings: dict[str, list[TestRow]] = {}
    est = []
    for run in _main_runs(ctx, ctx.opts.ablation_model):
        maps = [(run, "smx", ctx.opts.pooling)]
        rows = [row for a, b in (("smx-max2d", "ca"), ("smx", "smx-max2d"))
                if (row := _deletion(ctx, run, a, b, run.label, maps)) is not None]  # fmt: skip
        if rows:
            settings[run.label] = rows
            aucs = [ctx.data.deletions[(run, m)].auc for m in ("ca", "smx-max2d", "smx") if (run, m) in
                    ctx.data.deletions]  # fmt: skip
            est.append(" / ".join(_fmt(x, 1) for x in aucs) if len(aucs) == 3 else "–")
    return _claim(
        ctx,
        "Deletion: CA < SM^X aggregated to T' < full-resolution SM^X (§6 Discussion).",
        f"{d['ca']:.1f} < {d['smx-max2d']:.1f} < {d['smx']:.1f} (base, wer_max)",
        settings,
        "AUC " + ("; ".join(est) if est else "–") + " (CA, pooled, full)",
    )


def timestamps_claim(ctx: _Ctx) -> list[Claim]:
    """Claim 10 (beyond the paper): CA all has a lower DTW word-start error than the best layer."""
    settings: dict[str, list[TestRow]] = {}
    est = []
    for run, ts in ctx.data.timestamps.items():
        if run.split != ctx.opts.main_split:
            continue
        dtw = ts[ts["method"] == "dtw"]
        errors = {m: g.set_index("utterance")["start_ms"].astype(float) for m, g in dtw.groupby("map")}
        layers = {m: v for m, v in errors.items() if str(m).startswith("CA l")}
        if "CA all" not in errors or not layers:
            continue
        dev = ctx.data.timestamps.get(_selection_run(ctx, run))
        on_dev = False
        if dev is not None:
            means = dev[dev["method"] == "dtw"].groupby("map")["start_ms"].mean()
            dev_layers = {m: means[m] for m in layers if m in means and not math.isnan(means[m])}
            if dev_layers:
                layers, on_dev = {(b := min(dev_layers, key=dev_layers.get)): layers[b]}, True
        setting = run.label
        settings[setting] = [
            _paired(ctx, setting, f"{m}{' (best on dev)' if on_dev else ''} − CA all > 0 ms", v, errors["CA all"], [])
            for m, v in layers.items()
        ]  # fmt: skip
        est += [r.estimate for r in settings[setting]]
    return _claim(
        ctx,
        "Averaging CA over layers and heads improves timestamps: lower DTW word-start error than the "
        "best single layer (§6 suggests it; beyond the paper).",
        "suggested, not measured (no ground truth)",
        settings,
        f"layer − CA all {_span(est)} ms",
    )


#: The claims in the order of the check; each takes the context and returns its claim (or none).
CLAIMS: list[Callable[[_Ctx], list[Claim]]] = [
    last_layers_claim,
    head_average_claim,
    all_average_claim,
    smh_over_smx_claim,
    half_explanation_claim,
    smh_partial_claim,
    aggregation_claim,
    p_h_claim,
    deletion_ranking_claim,
    timestamps_claim,
]


def claims_check(data: StudyData, opts: ClaimOptions = ClaimOptions()) -> list[Claim]:
    """Every claim of :data:`CLAIMS` on this study's data (those it cannot check left out)."""
    out = []
    for k, check in enumerate(CLAIMS, 1):
        out += check(_Ctx(data, opts, k))
    return out


# --------------------------------------------------------------------------- outputs
def claims_markdown(claims: Sequence[Claim], opts: ClaimOptions = ClaimOptions()) -> str:
    """The claims check as a Markdown table, one short line per claim, with a summary line."""
    count = {v: sum(c.verdict == v for c in claims) for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)}
    lines = [
        "# Claims check",
        "",
        f"Of {len(claims)} claims of the paper, {count[HOLDS]} hold, {count[DOES_NOT_HOLD]} do not hold and "
        f"{count[INCONCLUSIVE]} are inconclusive on this study (paired bootstrap over utterances, p < "
        f"{opts.alpha:g}; at least {opts.min_utterances} utterances; maps with mean reliability ≥ "
        f"{opts.reliability_smx:g} (SM^X) / {opts.reliability_smh:g} (SM^H)). Paper figures are derived from "
        "its tables (EuroParl-ST, full-size models); every test is in claims.csv.",
        "",
        "| # | claim | paper | this study | verdict |",
        "|---:|---|---|---|---|",
    ]
    for c in claims:
        cells = [x.replace("|", "\\|") for x in (c.claim, c.paper, c.ours, f"**{c.verdict}**: {c.reason}")]
        lines.append(f"| {c.number} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["claim", "setting", "test", "estimate", "n", "p", "reliability", "verdict", "reason"]


def claims_table(claims: Sequence[Claim]) -> pd.DataFrame:
    """Every test of every claim, then per claim a row ``setting = "claim"`` with its verdict."""
    rows = []
    for c in claims:
        rows += [vars(t) for t in c.tests]
        rows.append({"claim": c.number, "setting": "claim", "test": c.claim, "estimate": math.nan, "n": math.nan,
                     "p": math.nan, "reliability": "", "verdict": c.verdict, "reason": c.reason})  # fmt: skip
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def write_claims(
    inputs: Mapping[str, Sequence[str | Path]],
    claims_path: str | Path,
    csv_path: str | Path,
    options: Mapping[str, object],
) -> list[Claim]:
    """Rule ``claims_check``: read ``inputs`` (``correlations``, ``deletion_curves``,
    ``deletion_hyps``, ``references``, ``timestamps``: :func:`~caspes.report.claims_data.load_study`),
    check the claims with :class:`ClaimOptions` ``options``, write ``claims.md`` and ``claims.csv``;
    logs the Markdown and returns the claims."""
    opts = ClaimOptions(**options)  # type: ignore[arg-type]
    data = load_study(**{k: list(v) for k, v in inputs.items()})
    claims = claims_check(data, opts)
    with atomic_open(csv_path, "w", newline="", encoding="utf-8") as f:
        claims_table(claims).to_csv(f, index=False, float_format="%.6g")
    text = claims_markdown(claims, opts)
    atomic_write_text(claims_path, text)
    log.info("\n%s", text)
    return claims
