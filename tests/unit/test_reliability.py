"""Split-half reliability of SPES maps, Spearman-Brown, the noise-corrected correlation, and the
columns they add to correlation files and tables."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_spes import (
    DEC,
    N_MELS,
    P_DEC,
    PlantedModel,
    T,
    _features,
    _generator,
    _levels,
    _model,
    _planted_features,
)
from tinymodels import one_thread  # noqa: F401 - fixture

from caspes.analysis.bootstrap import disattenuated_ci
from caspes.analysis.correlation import (
    COLUMNS,
    correlate_stores,
    map_agreement,
    rank_correlations,
    spearman_brown,
    split_half,
)
from caspes.core.manifest import DataError
from caspes.decode.xattn import CrossAttentionStoreWriter
from caspes.explain.spes import OcclusionOptions, explain_encoder, explain_input, kl_rows
from caspes.explain.stores import SaliencyRecord, SaliencyStore, SaliencyStoreWriter
from caspes.report.results import Bootstrap, corr_cell
from caspes.report.tables import Table, to_csv

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- engine
def _naive_halves_input(model, x, dec, levels, n_masks, p, seed, uid):
    """Half maps of SM^X one mask at a time: mask m of a level goes to half m % 2."""
    per_level = n_masks // len(levels)
    gen = _generator(seed, uid)
    xt = torch.as_tensor(x, dtype=torch.float64)
    t, f = xt.shape
    d = torch.tensor([dec])
    num = torch.zeros(2, len(dec), t, f, dtype=torch.float64)
    den = torch.zeros(2, t, f, dtype=torch.float64)
    with torch.no_grad():
        enc = model.encode(xt[None], torch.tensor([t]))
        clean = torch.log_softmax(
            model.decode_teacher_forced(enc.states, enc.lengths, d).logits[0].float(), -1
        )
        for lab in levels:
            labels = torch.as_tensor(np.asarray(lab, dtype=np.int64))
            keep = torch.rand(per_level, int(labels.max()) + 1, generator=gen) >= p
            for m in range(per_level):
                mask = keep[m][labels]
                e = model.encode((xt * mask.double())[None], torch.tensor([t]))
                out = model.decode_teacher_forced(e.states, e.lengths, d).logits
                s = kl_rows(clean, torch.log_softmax(out.float(), dim=-1))[0].double()
                occluded = (~mask).double()
                num[m % 2] += s[:, None, None] * occluded
                den[m % 2] += occluded
    return torch.where(den[:, None] > 0, num / den[:, None].clamp_min(1), torch.zeros_like(num)).numpy()


def test_input_halves_are_the_maps_of_the_even_and_odd_masks() -> None:
    model, x, levels = _model(1), _features(seed=1), _levels()
    want = _naive_halves_input(model, x, DEC, levels, 62, 0.5, 3, "utt_7")
    for batch in (1, 7):
        res = explain_input(
            model, x, DEC, levels, OcclusionOptions(n_masks=62, seed=3, batch_size=batch), "utt_7"
        )
        assert res.halves is not None and res.halves.shape == (2, len(DEC), T, N_MELS)
        np.testing.assert_allclose(res.halves, want, rtol=2.0**-22, atol=1e-10)
    assert not np.allclose(want[0], want[1])  # two different estimates


def test_encoder_halves_recombine_to_the_full_map() -> None:
    """Each element's full map is the count-weighted mean of its two half maps."""
    model, x = _model(2), _features(seed=2)
    opts = OcclusionOptions(n_masks=41, p=0.5, seed=4, batch_size=5)
    res = explain_encoder(model, x, DEC, opts, "u")
    gen = _generator(4, "u")
    keep = torch.rand(41, res.counts.size, generator=gen) >= 0.5
    occluded = (~keep).double().numpy()
    c0, c1 = occluded[0::2].sum(0), occluded[1::2].sum(0)
    np.testing.assert_array_equal(c0 + c1, res.counts)
    combined = (res.halves[0] * c0 + res.halves[1] * c1) / np.maximum(c0 + c1, 1)
    np.testing.assert_allclose(combined, res.saliency, rtol=1e-5, atol=1e-7)


def test_reliability_of_a_planted_map_grows_with_the_budget() -> None:
    """On the planted model (its relevance is known), SM^H from more masks is more reliable, and
    the Spearman-Brown estimate of the smaller budget predicts the split-half r of the double one."""
    model = PlantedModel()
    x = _planted_features(1)
    roles = ["lang", "token", "eos"]
    rel = {}
    for n in (40, 80, 2000):
        res = explain_encoder(model, x, P_DEC, OcclusionOptions(n_masks=n, p=0.7, seed=1), "planted")
        rel[n] = split_half(res.halves, roles)
    assert rel[40] < rel[2000] and rel[2000] > 0.95
    # half of 80 masks = 40 masks: r_hh(80) estimates the reliability of a 40-mask map, ...
    assert abs(spearman_brown(rel[40]) - rel[80]) < 0.25


# --------------------------------------------------------------------------- statistics
def test_spearman_brown() -> None:
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(1.0) == 1.0 and spearman_brown(0.0) == 0.0
    assert math.isnan(spearman_brown(math.nan)) and math.isnan(spearman_brown(-1.0))


def test_split_half_planted_noise() -> None:
    """Halves = signal + independent noise of the same variance: expected r_hh = 1/2 (token
    normalisation is a per-row affine map, which leaves r of one-row maps unchanged)."""
    rng = np.random.default_rng(0)
    signal = rng.standard_normal((1, 4000))
    halves = np.stack([signal + rng.standard_normal((1, 4000)) for _ in range(2)])[:, :, :]
    r = split_half(np.abs(halves), ["token"], sm_norm="none")
    assert r == pytest.approx(np.corrcoef(np.abs(halves[0, 0]), np.abs(halves[1, 0]))[0, 1])
    r_signed = split_half(halves + 10, ["token"], sm_norm="token")
    assert abs(r_signed - 0.5) < 0.05
    assert split_half(np.stack([signal, signal]) + 10, ["token"]) == pytest.approx(1.0)
    # only content rows count: a constant language-tag row changes nothing
    with_lang = np.concatenate([np.ones((2, 1, 4000)), halves + 10], axis=1)
    assert split_half(with_lang, ["lang", "token"]) == pytest.approx(r_signed)
    assert math.isnan(split_half(None, ["token"]))
    with pytest.raises(ValueError, match="halves"):
        split_half(halves[:1], ["token"])


def test_split_half_pools_input_maps_like_the_correlation() -> None:
    """SM^X halves are pooled to T' first: noise confined to one frame of each window of 4 is
    invisible to 2D max pooling when the signal is larger, visible without pooling."""
    rng = np.random.default_rng(1)
    i, t, f = 3, 40, 5
    base = np.repeat(rng.random((i, t // 4, 1)), 4, axis=1) * 10 + 5  # constant per window
    base = np.broadcast_to(base, (i, t, f)).copy()
    halves = np.stack([base.copy(), base.copy()])
    halves[:, :, 1::4, :] = rng.random((2, i, t // 4, f))  # small noise, below every window's max
    assert split_half(halves, ["token"] * i, pooling="max2d", factor=4) == pytest.approx(1.0)
    assert split_half(halves, ["token"] * i, pooling="avg2d", factor=4) < 0.9999


def test_rank_correlations() -> None:
    x = np.arange(10.0)
    assert rank_correlations(x, x**3) == pytest.approx((1.0, 1.0))
    assert rank_correlations(x, -x) == pytest.approx((-1.0, -1.0))
    rho, tau = rank_correlations(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4]))
    assert rho == pytest.approx(0.8) and tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert all(math.isnan(v) for v in rank_correlations(x, np.ones(10)))


def test_disattenuated_ci() -> None:
    r = np.full(20, 0.4)
    ci = disattenuated_ci(r, np.full(20, 0.64), n_resamples=200, seed=1)
    assert ci.mean == pytest.approx(0.5) and ci.low == pytest.approx(0.5) and ci.n == 20
    rng = np.random.default_rng(3)
    r, rel = 0.4 + 0.1 * rng.standard_normal(50), 0.7 + 0.05 * rng.standard_normal(50)
    r[3], rel[5] = math.nan, math.nan  # pairs with an undefined value are left out
    ci = disattenuated_ci(r, rel, n_resamples=500, seed=2)
    ok = np.isfinite(r) & np.isfinite(rel)
    assert ci.n == 48 and ci.mean == pytest.approx(r[ok].mean() / math.sqrt(rel[ok].mean()))
    assert ci.low < ci.mean < ci.high
    assert disattenuated_ci(r, rel, n_resamples=500, seed=2) == ci  # deterministic
    assert math.isnan(disattenuated_ci([0.5, 0.4], [-0.1, 0.0]).mean)  # no positive reliability
    no_ci = disattenuated_ci([0.3, 0.5], [0.25, 0.25])
    assert no_ci.mean == pytest.approx(0.8) and math.isnan(no_ci.low)
    with pytest.raises(ValueError, match="equal length"):
        disattenuated_ci([0.1], [0.2, 0.3])


# --------------------------------------------------------------------------- files and tables
def _stores(tmp_path: Path, halves: bool) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    xattn, sal = tmp_path / "xattn.zip", tmp_path / f"smh-{halves}.zip"
    roles = ["lang", "token", "token", "token", "eos"]
    with CrossAttentionStoreWriter(xattn) as w, SaliencyStoreWriter(sal) as s:
        for k in range(3):
            att = rng.random((2, 2, 5, 12))
            att /= att.sum(-1, keepdims=True)
            w.add(f"u{k}", att.astype(np.float32), [2, 4, 7, 5, 3], [4, 7, 5, 3, 2], ["<en>", "a", "b", "c", "</s>"],
                  roles)  # fmt: skip
            truth = att.mean((0, 1))
            h = np.stack([truth + 0.05 * rng.random((5, 12)) for _ in range(2)])
            s.add_record(SaliencyRecord(f"u{k}", h.mean(0), np.ones(12, dtype=int), [2, 4, 7, 5, 3],
                                        [4, 7, 5, 3, 2], ["<en>", "a", "b", "c", "</s>"], roles, "encoder", 10,
                                        0.5, 1, h if halves else None))  # fmt: skip
    return xattn, sal


def test_store_keeps_halves_and_correlations_report_reliability(tmp_path: Path) -> None:
    xattn, sal = _stores(tmp_path, halves=True)
    with SaliencyStore(sal) as store:
        assert store["u1"].halves is None  # not read unless asked for
    with SaliencyStore(sal, halves=True) as store:
        rec = store["u1"]
        assert rec.halves is not None and rec.halves.shape == (2, 5, 12)
        np.testing.assert_allclose(rec.halves.mean(0), rec.saliency, rtol=2e-3, atol=1e-4)
    records = correlate_stores(xattn, sal, factor=4)
    assert set(COLUMNS) == set(records[0])
    by_utt = {r["utterance"]: r for r in records if r["layer"] == "avg" and r["head"] == "avg"}
    with SaliencyStore(sal, halves=True) as store:
        for uid, rec in by_utt.items():
            r_hh = split_half(store[uid].halves, store[uid].roles)
            assert rec["split_half"] == pytest.approx(r_hh) and rec["reliability"] == pytest.approx(
                2 * r_hh / (1 + r_hh)
            )
            assert 0.5 < rec["reliability"] < 1
    # a store written before half maps existed reads, and its reliability is unknown
    _, old = _stores(tmp_path, halves=False)
    with SaliencyStore(old, halves=True) as store:
        assert store["u0"].halves is None
    assert all(math.isnan(r["reliability"]) for r in correlate_stores(xattn, old))


def test_map_agreement_of_two_stores(tmp_path: Path) -> None:
    """Same store twice: r = 1 and equal reliabilities; a store of other noise agrees less; a store
    missing an utterance is an error naming it."""
    _, sal = _stores(tmp_path, halves=True)
    same = map_agreement(sal, sal)
    assert [r["utterance"] for r in same] == ["u0", "u1", "u2"]
    for rec in same:
        assert rec["r"] == pytest.approx(1.0) and rec["reliability_a"] == rec["reliability_b"]
        assert rec["pooling"] == "none" and rec["kind"] == "encoder"
    rng = np.random.default_rng(9)
    other = tmp_path / "other.zip"
    with SaliencyStore(sal, halves=True) as store, SaliencyStoreWriter(other) as w:
        for uid in store.ids:
            rec = store[uid]
            noisy = rec.halves + 0.2 * rng.random(rec.halves.shape)
            w.add_record(dataclasses.replace(rec, saliency=noisy.mean(0), halves=noisy))
    worse = map_agreement(sal, other)
    assert all(0 < r["r"] < 0.99 for r in worse)
    assert all(r["reliability_b"] < r["reliability_a"] for r in worse)
    short = tmp_path / "short.zip"
    with SaliencyStore(sal, halves=True) as store, SaliencyStoreWriter(short) as w:
        w.add_record(store["u0"])
    with pytest.raises(DataError, match="u1"):
        map_agreement(sal, short)


def test_corr_cell_and_csv_carry_the_corrected_r() -> None:
    group = pd.DataFrame({
        "r": [0.3, 0.5, math.nan], "reliability": [0.6, 0.4, 0.9], "spearman": [0.2, 0.4, math.nan],
        "kendall": [0.1, 0.3, math.nan],
    })  # fmt: skip
    cell = corr_cell(group, Bootstrap(resamples=100, seed=1))
    assert cell.value == pytest.approx(0.4) and cell.ci is not None
    assert cell.extra["corrected"] == pytest.approx(0.4 / math.sqrt(0.5))
    assert cell.extra["reliability"] == pytest.approx(0.6333333) and cell.extra["spearman"] == pytest.approx(
        0.3
    )
    assert cell.extra["corrected_lo"] <= cell.extra["corrected"] <= cell.extra["corrected_hi"]
    plain = corr_cell(group[["r"]])
    assert plain.extra == {} and plain.value == pytest.approx(0.4)
    csv = to_csv(Table("t", "", ["run", "l-AVG"], [["a", cell], ["b", plain]])).splitlines()
    header = csv[0].split(",")
    assert header == ["run", "l-AVG", "l-AVG_lo", "l-AVG_hi", "l-AVG_corrected", "l-AVG_corrected_lo",
                      "l-AVG_corrected_hi", "l-AVG_reliability", "l-AVG_spearman", "l-AVG_kendall"]  # fmt: skip
    row_a, row_b = (dict(zip(header, line.split(","))) for line in csv[1:])
    assert float(row_a["l-AVG_corrected"]) == pytest.approx(0.4 / math.sqrt(0.5))
    assert row_b["l-AVG_corrected"] == "" and float(row_b["l-AVG"]) == pytest.approx(0.4)


def test_prefix_maps_are_the_maps_of_the_first_masks() -> None:
    """A budget sweep from one run: on CPU a draw of N masks starts with the draw of b < N masks,
    so the prefix map of SM^H (and of SM^X with one SLIC level) equals a run with b masks."""
    model, x = _model(2), _features(seed=2)
    sweep = explain_encoder(
        model, x, DEC, OcclusionOptions(n_masks=40, seed=4, batch_size=6), "u", prefixes=[10, 25]
    )
    assert sorted(sweep.prefixes) == [10, 25]
    for b in (10, 25):
        alone = explain_encoder(model, x, DEC, OcclusionOptions(n_masks=b, seed=4, batch_size=6), "u")
        got = sweep.prefixes[b]
        assert got.n_masks == b
        np.testing.assert_array_equal(got.counts, alone.counts)
        np.testing.assert_allclose(got.saliency, alone.saliency, rtol=2.0**-22, atol=1e-10)
        np.testing.assert_allclose(got.halves, alone.halves, rtol=2.0**-22, atol=1e-10)
    one_level = _levels()[:1]
    sweep_x = explain_input(model, x, DEC, one_level, OcclusionOptions(n_masks=30, seed=4, batch_size=4), "u",
                            prefixes=[12])  # fmt: skip
    alone_x = explain_input(model, x, DEC, one_level, OcclusionOptions(n_masks=12, seed=4, batch_size=4), "u")
    np.testing.assert_allclose(sweep_x.prefixes[12].saliency, alone_x.saliency, rtol=2.0**-22, atol=1e-10)
    np.testing.assert_array_equal(sweep_x.prefixes[12].counts, alone_x.counts)
    # three levels: b // 3 masks of each level; the full map is the one without prefixes
    three = explain_input(
        model, x, DEC, _levels(), OcclusionOptions(n_masks=30, seed=4), "u", prefixes=[9, 30]
    )
    plain = explain_input(model, x, DEC, _levels(), OcclusionOptions(n_masks=30, seed=4), "u")
    np.testing.assert_array_equal(three.saliency, plain.saliency)
    assert three.prefixes[9].n_masks == 9 and three.prefixes[30] is three
    assert three.prefixes[9].counts.sum() < three.counts.sum()
    with pytest.raises(ValueError, match="outside"):
        explain_encoder(model, x, DEC, OcclusionOptions(n_masks=10, seed=4), "u", prefixes=[11])


# --------------------------------------------------------------------------- convergence output
def test_budget_for_the_reliability_target() -> None:
    from caspes.report.convergence import budget_for

    assert budget_for([100, 200, 400], [0.95, 0.97, 0.99], 0.9) == (100.0, "measured")
    masks, how = budget_for([400, 100, 200], [0.95, 0.5, 0.85], 0.9)  # sorted by budget first
    assert how == "interpolated" and masks == pytest.approx(200 * 2 ** (0.05 / 0.10))
    # 0.6 at 1000 masks: k = 0.9 * 0.4 / (0.6 * 0.1) = 6 times as many
    assert budget_for([500, 1000], [0.4, 0.6], 0.9) == (pytest.approx(6000.0), "extrapolated")
    assert budget_for([500], [math.nan], 0.9)[1] == "unknown"


def test_convergence_table_and_figure(tmp_path: Path) -> None:
    from caspes.report.convergence import write_convergence

    path = tmp_path / "results/base/en-en/dev/convergence.tsv"
    path.parent.mkdir(parents=True)
    rows = []
    for uid, r_scale in (("u1", 1.0), ("u2", 0.8)):
        for name, budgets, rel in (("smx", [30, 60, 120], [0.5, 0.7, 0.85]), ("smh", [30, 60], [0.96, 0.98])):
            for b, q in zip(budgets, rel):
                rows.append({"utterance": uid, "map": name, "budget": b, "masks": b, "r": 0.3 * r_scale * math.sqrt(q),
                             "split_half": q / (2 - q), "reliability": q})  # fmt: skip
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    table = write_convergence(path, tmp_path / "paper/convergence.csv", {"resamples": 50, "seed": 1})
    for ext in ("csv", "md", "tex", "png", "pdf"):
        assert (tmp_path / f"paper/convergence.{ext}").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "paper/convergence.csv")
    assert csv["masks"].tolist() == [30, 60, 30, 60, 120] and csv["map"].tolist()[:2] == ["SM^H", "SM^H"]
    # r = 0.3 * scale * sqrt(rho): the corrected r is the same 0.27 at every budget
    assert csv["r/√ρ"].to_numpy() == pytest.approx(np.full(5, 0.27))
    assert csv["ρ"].tolist() == pytest.approx([0.96, 0.98, 0.5, 0.7, 0.85])
    # 120 * 0.9 * (1 - 0.85) / (0.85 * (1 - 0.9)) = 190.6 masks
    assert table.notes == [
        "SM^X does not reach ρ = 0.9 within 120 masks (ρ 0.850); Spearman-Brown extrapolation: about 191 masks.",
        "SM^H reaches ρ = 0.95 at about 30 masks (measured).",
    ]
