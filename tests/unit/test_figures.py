"""Unit tests for caspes.report.figures (Figures 2-4: heatmaps written as PNG and PDF) and
caspes.report.paper_figures (which maps each figure shows, from the workflow's stores)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from caspes.decode.xattn import CrossAttentionStoreWriter
from caspes.explain.stores import SaliencyRecord, SaliencyStoreWriter
from caspes.report.figure_data import figure_maps, timestamp_bars
from caspes.report.figures import (
    PNG_DPI,
    _grid_figure,
    _maps_figure,
    _mel_cell_edges,
    _token_spectrogram_figure,
    mel_bin_centres,
    plot_bars,
    plot_grid,
    plot_maps,
    plot_token_spectrograms,
    save_figure,
)
from caspes.report.paper_figures import languages_figure, make_figure, utterance_figure

TOKENS = ["▁What", "▁is", "▁import", "ant", "▁are", "▁the"]


def _map(n_tokens: int = len(TOKENS), n_frames: int = 25, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n_tokens, n_frames))


def _saliency(n_tokens: int = len(TOKENS), n_frames: int = 100, n_mels: int = 80) -> np.ndarray:
    return np.random.default_rng(1).random((n_tokens, n_frames, n_mels))


def _expected_pixels(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches()
    return round(height * PNG_DPI), round(width * PNG_DPI)


def _check_outputs(paths: list[Path], prefix: Path, pixels: tuple[int, int]) -> None:
    assert paths == [prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".pdf")]
    png, pdf = paths
    assert png.stat().st_size > 0 and pdf.stat().st_size > 0
    assert pdf.read_bytes().startswith(b"%PDF")
    assert imread(png).shape[:2] == pixels


# --- mel_bin_centres ------------------------------------------------------------------------


def _reference_centre(m: int, n_mels: int = 80, low: float = 20.0, high: float = 8000.0) -> float:
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    step = (mel(high) - mel(low)) / (n_mels + 1)
    return 700.0 * (math.exp((mel(low) + (m + 1) * step) / 1127.0) - 1.0)


def test_mel_bin_centres_kaldi_defaults() -> None:
    centres = mel_bin_centres()
    assert centres.shape == (80,)
    assert np.all(np.diff(centres) > 0)
    assert centres[0] > 20.0 and centres[-1] < 8000.0
    for m in (0, 39, 79):
        assert centres[m] == pytest.approx(_reference_centre(m), rel=1e-12)
    assert centres[0] == pytest.approx(42.49, abs=0.01)  # mel^-1(mel(20) + (mel(8000) - mel(20)) / 81)
    assert centres[-1] == pytest.approx(7736.43, abs=0.01)


def test_mel_bin_centres_high_freq_convention() -> None:
    np.testing.assert_allclose(mel_bin_centres(high_freq=-400.0), mel_bin_centres(high_freq=7600.0))
    assert mel_bin_centres(n_mels=40, sample_rate=8000)[-1] < 4000.0
    with pytest.raises(ValueError):
        mel_bin_centres(low_freq=9000.0)


def test_mel_bin_centres_match_torchaudio() -> None:
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    _, centres = kaldi.get_mel_banks(80, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
    np.testing.assert_allclose(mel_bin_centres(), centres.double().numpy().ravel(), rtol=1e-5)


@pytest.mark.parametrize("n_mels", [1, 80])
def test_mel_cell_edges_bracket_centres(n_mels: int) -> None:
    edges, centres = _mel_cell_edges(n_mels, 16000, 20.0, 0.0), mel_bin_centres(n_mels)
    assert edges.shape == (n_mels + 1,) and edges[-1] == 8000.0 and edges[0] > 20.0
    assert np.all(edges[:-1] < centres) and np.all(centres < edges[1:])
    mel_widths = np.diff(1127.0 * np.log1p(edges[:-1] / 700.0))
    np.testing.assert_allclose(
        mel_widths, (2840.0 - 31.7) / 81, rtol=1e-3
    )  # equal width in mel (top cell excepted)


# --- plot_maps (Figure 2) -------------------------------------------------------------------


def _panels(n_frames: int = 25) -> list[tuple[str, np.ndarray]]:
    return [
        ("SM^X (2D max)", _map(n_frames=n_frames, seed=0)),
        ("SM^H", _map(n_frames=n_frames, seed=1)),
        ("CA (all layers and heads)", _map(n_frames=n_frames, seed=2)),
    ]


def test_plot_maps_writes_png_and_pdf(tmp_path: Path) -> None:
    prefix = tmp_path / "sub" / "fig2"
    pixels = _expected_pixels(_maps_figure(_panels(), TOKENS, "utt 1"))
    paths = plot_maps(_panels(), TOKENS, prefix, title="utt 1")
    _check_outputs(paths, prefix, pixels)


def test_maps_figure_axes() -> None:
    fig = _maps_figure(_panels(n_frames=25), TOKENS, frame_seconds=0.04)
    heatmaps = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in heatmaps] == ["SM^X (2D max)", "SM^H", "CA (all layers and heads)"]
    assert len(fig.axes) == 3
    for ax, (_, values) in zip(heatmaps, _panels(n_frames=25)):
        assert [t.get_text() for t in ax.get_yticklabels()] == TOKENS
        assert ax.get_xlim() == pytest.approx((0.0, 1.0))  # 25 frames x 40 ms
        image = ax.get_images()[0]
        assert image.get_interpolation() == "nearest"
        assert image.get_clim() == pytest.approx((values.min(), values.max()))
        assert len(ax.child_axes) == 1  # its colourbar, inset at full height


def test_nan_maps_get_finite_colour_limits() -> None:
    values = _map()
    values[0, 0] = np.nan
    fig = _maps_figure([("nan", values), ("all nan", np.full_like(values, np.nan))], TOKENS)
    some, none = (ax.get_images()[0] for ax in fig.axes)
    assert some.get_clim() == pytest.approx((np.nanmin(values), np.nanmax(values)))
    assert none.get_clim() == (0.0, 1.0)
    assert np.ma.is_masked(some.get_array()) and some.get_array().mask[0, 0]


def test_plot_maps_shape_mismatch_names_panel(tmp_path: Path) -> None:
    panels = _panels() + [("bad panel", _map(n_tokens=len(TOKENS) + 1))]
    with pytest.raises(ValueError, match="bad panel"):
        plot_maps(panels, TOKENS, tmp_path / "x")
    with pytest.raises(ValueError, match="SM\\^H"):
        plot_maps([("SM^H", np.zeros((len(TOKENS), 3, 2)))], TOKENS, tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_plot_maps_deterministic(tmp_path: Path) -> None:
    first = plot_maps(_panels(), TOKENS, tmp_path / "a", title="same")
    second = plot_maps(_panels(), TOKENS, tmp_path / "b", title="same")
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes()


def test_plot_maps_nan_and_constant(tmp_path: Path) -> None:
    with_nan = _map()
    with_nan[1, 3:7] = np.nan
    panels = [
        ("nan", with_nan),
        ("all nan", np.full_like(with_nan, np.nan)),
        ("const", np.ones_like(with_nan)),
    ]
    paths = plot_maps(panels, TOKENS, tmp_path / "nan")
    assert all(p.stat().st_size > 0 for p in paths)


def test_long_token_lists_use_smaller_font() -> None:
    short = _maps_figure([("m", _map())], TOKENS)
    many = [f"▁t{i}" for i in range(40)]
    long = _maps_figure([("m", _map(n_tokens=40))], many)
    short_size = short.axes[0].get_yticklabels()[0].get_fontsize()
    long_size = long.axes[0].get_yticklabels()[0].get_fontsize()
    assert 5.0 <= long_size < short_size
    assert long.get_size_inches()[1] > short.get_size_inches()[1]


# --- plot_token_spectrograms (Figure 3) -----------------------------------------------------


def test_plot_token_spectrograms_writes_png_and_pdf(tmp_path: Path) -> None:
    prefix = tmp_path / "fig3"
    pixels = _expected_pixels(_token_spectrogram_figure(_saliency(), TOKENS, "What is"))
    paths = plot_token_spectrograms(_saliency(), TOKENS, prefix, title="What is")
    _check_outputs(paths, prefix, pixels)


def test_token_spectrogram_figure_log_frequency_axis() -> None:
    fig = _token_spectrogram_figure(_saliency(n_frames=100), TOKENS, frame_seconds=0.01)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == TOKENS
    for ax in panels:
        assert ax.get_yscale() == "log"
        low, high = ax.get_ylim()
        assert 20.0 < low < mel_bin_centres()[0] and high == pytest.approx(8000.0)
        assert ax.get_xlim() == pytest.approx((0.0, 1.0))
        assert list(ax.get_yticks()) == [100.0, 300.0, 1000.0, 3000.0, 8000.0]
        assert len(ax.collections) == 1
    # shared y axis: labels on the first column only
    for ax in (panels[0], panels[4]):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["100", "300", "1k", "3k", "8k"]
    # 6 tokens -> 4 columns x 2 rows, two blank slots, one shared colourbar
    assert len(fig.axes) == 8 + 1
    assert sum(not ax.axison for ax in fig.axes) == 2


def test_token_spectrograms_max_tokens_and_layout() -> None:
    many = [f"▁w{i}" for i in range(20)]
    fig = _token_spectrogram_figure(_saliency(n_tokens=20, n_frames=30), many, max_tokens=12)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == many[:12]
    five = _token_spectrogram_figure(_saliency(n_tokens=5, n_frames=30), many[:5])
    five.draw_without_rendering()
    assert five.axes[0].get_xlabel() == "" and not five.axes[0].get_xticklabels()
    for ax in five.axes[1:5]:  # every panel with nothing below it shows its time axis
        assert ax.get_xlabel() == "time (s)"
        assert "0.00" in [t.get_text() for t in ax.get_xticklabels()]
    one = _token_spectrogram_figure(_saliency(n_tokens=1, n_frames=30), ["▁a"])
    assert len(one.axes) == 2 and one.get_size_inches()[0] < fig.get_size_inches()[0]


def test_token_spectrograms_shape_check(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="saliency"):
        plot_token_spectrograms(_saliency(n_tokens=3), TOKENS, tmp_path / "x")
    with pytest.raises(ValueError):
        plot_token_spectrograms(_map(), TOKENS, tmp_path / "x")


def test_token_spectrograms_deterministic_and_nan(tmp_path: Path) -> None:
    saliency = _saliency(n_frames=40)
    saliency[0, :10, :20] = np.nan
    saliency[1] = np.nan
    first = plot_token_spectrograms(saliency, TOKENS, tmp_path / "a")
    second = plot_token_spectrograms(saliency, TOKENS, tmp_path / "b")
    for one, two in zip(first, second):
        assert one.stat().st_size > 0
        assert one.read_bytes() == two.read_bytes()


# --- plot_grid (Figure 4) -------------------------------------------------------------------


def _cells() -> list[list]:
    it_tokens = ["▁Ci", "▁sono", "▁progetti"]
    return [
        [("en ASR CA", _map(seed=3), TOKENS), ("en ASR SM^H", _map(seed=4), TOKENS), None],
        [("it ST CA", _map(3, 30, 5), it_tokens), ("it ST SM^H", _map(3, 30, 6), it_tokens)],
    ]


def test_plot_grid_writes_png_and_pdf(tmp_path: Path) -> None:
    prefix = tmp_path / "fig4"
    pixels = _expected_pixels(_grid_figure(_cells(), "Figure 4"))
    paths = plot_grid(_cells(), prefix, title="Figure 4")
    _check_outputs(paths, prefix, pixels)


def test_grid_figure_layout() -> None:
    fig = _grid_figure(_cells())
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in titled] == ["en ASR CA", "en ASR SM^H", "it ST CA", "it ST SM^H"]
    assert [t.get_text() for t in titled[2].get_yticklabels()] == ["▁Ci", "▁sono", "▁progetti"]
    assert titled[2].get_xlim() == pytest.approx((0.0, 1.2))
    assert sum(not ax.axison for ax in fig.axes) == 2  # the None cell and the padded one
    assert fig.get_size_inches()[0] == pytest.approx(3 * 3.6)


def test_plot_grid_shape_mismatch_names_cell(tmp_path: Path) -> None:
    cells = _cells()
    cells[1][0] = ("it ST CA", _map(4, 30), ["▁Ci", "▁sono", "▁progetti"])
    with pytest.raises(ValueError, match="it ST CA"):
        plot_grid(cells, tmp_path / "x")


def test_plot_grid_deterministic_and_nan(tmp_path: Path) -> None:
    cells = _cells()
    cells[0][0][1][2, :] = np.nan
    first = plot_grid(cells, tmp_path / "a")
    second = plot_grid(cells, tmp_path / "b")
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes()


def test_save_figure_same_path_twice_identical(tmp_path: Path) -> None:
    png, pdf = save_figure(_maps_figure(_panels(), TOKENS), tmp_path / "deep" / "dir" / "f")
    before = png.read_bytes(), pdf.read_bytes()
    save_figure(_maps_figure(_panels(), TOKENS), tmp_path / "deep" / "dir" / "f")
    assert (png.read_bytes(), pdf.read_bytes()) == before
    assert b"CreationDate" not in before[1]


# --- make_figure (rule paper_figure) ---------------------------------------------------------


def _stores(run: Path, n_frames: int = 24, n_mels: int = 8) -> dict[str, str]:
    """A run folder with a cross-attention store and SM^X / SM^H stores of two utterances, each with
    a language row, three content tokens and an end-of-sentence row."""
    rng = np.random.default_rng(len(str(run)))
    pieces, roles = ["<lang:en>", "▁a", "▁b", "c", "</s>"], ["lang", "token", "token", "token", "eos"]
    ids = [10, 11, 12, 13, 2]
    (run / "saliency").mkdir(parents=True, exist_ok=True)
    paths = {"xattn": str(run / "xattn.zip"), "smx": str(run / "saliency/smx.zip"),
             "smh": str(run / "saliency/smh.zip")}  # fmt: skip
    with CrossAttentionStoreWriter(paths["xattn"]) as writer:
        for uid in ("u0", "u1"):
            writer.add(uid, rng.random((2, 2, 5, n_frames // 4)), [2, *ids[:-1]], ids, pieces, roles)
    for key, shape, kind in (("smx", (5, n_frames, n_mels), "input"), ("smh", (5, n_frames // 4), "encoder")):
        with SaliencyStoreWriter(paths[key]) as writer:
            for uid in ("u0", "u1"):
                writer.add_record(SaliencyRecord(uid, rng.random(shape), np.ones(shape[1:], dtype=int),
                                                 [2, *ids[:-1]], ids, pieces, roles, kind, 10, 0.7, 1))  # fmt: skip
    return paths


def _same_files(one: list[Path], two: list[Path]) -> bool:
    return [p.read_bytes() for p in one] == [p.read_bytes() for p in two]


def test_make_figure_fig2_and_fig3_show_one_utterance(tmp_path: Path) -> None:
    s = _stores(tmp_path / "results/base/en-en/dev")
    inputs = {"xattn": [s["xattn"]], "smx": [s["smx"]], "smh": [s["smh"]]}
    fig2 = make_figure("fig2", inputs, tmp_path / "paper/fig2.png", utterance=1, pooling="avg2d")
    assert fig2 == [tmp_path / "paper/fig2.png", tmp_path / "paper/fig2.pdf"]
    m = figure_maps(s["xattn"], s["smh"], 1, s["smx"], "avg2d")
    assert m["id"] == "u1" and m["tokens"] == ["▁a", "▁b", "c"]
    panels = [("SM^X (avg2d)", m["smx_pooled"]), ("SM^H", m["smh"]), ("CA (all layers and heads)", m["ca"])]
    expected = plot_maps(panels, m["tokens"], tmp_path / "ref2", title="base en-en dev: u1")
    assert _same_files(fig2, expected)
    fig3 = make_figure("fig3", inputs, tmp_path / "paper/fig3.png", utterance=1, pooling="avg2d")
    expected = plot_token_spectrograms(m["smx"], m["tokens"], tmp_path / "ref3", title="base en-en dev: u1")
    assert _same_files(fig3, expected)
    assert _same_files(utterance_figure("fig3", s["xattn"], s["smh"], s["smx"], 1, tmp_path / "u3"), expected)


def test_make_figure_fig4_one_row_per_source_language(tmp_path: Path) -> None:
    runs = [_stores(tmp_path / f"results/multi/{pair}/test") for pair in ("en-en", "en-it", "it-it")]
    inputs = {"xattn": [r["xattn"] for r in runs], "smx": [], "smh": [r["smh"] for r in runs]}
    paths = make_figure("fig4", inputs, tmp_path / "paper/fig4.png")
    maps = [figure_maps(r["xattn"], r["smh"], 0) for r in runs]
    rows = [[("ASR", "en-en", maps[0]), ("ST", "en-it", maps[1])], [("ASR", "it-it", maps[2])]]
    cells: list[list] = [
        [(f"{task} {pair}: {kind}", m[key], m["tokens"]) for task, pair, m in row
         for kind, key in (("CA", "ca"), ("SM^H", "smh"))]
        for row in rows
    ]  # fmt: skip
    cells[1] += [None, None]
    expected = plot_grid(cells, tmp_path / "ref4", title="multi test: utterance 0 of each source language")
    assert _same_files(paths, expected)
    assert _same_files(languages_figure(inputs["xattn"], inputs["smh"], 0, tmp_path / "l4"), expected)


def test_make_figure_timestamps_bars(tmp_path: Path) -> None:
    files = []
    for model in ("base", "small"):
        run = tmp_path / f"results/{model}/en-en/test"
        run.mkdir(parents=True)
        rows = [("u0", name, method, 3, 40.0 + k, 50.0) for k, name in enumerate(["CA all", "CA l2", "CA l1"])
                for method in ("dtw", "argmax")]  # fmt: skip
        pd.DataFrame(rows, columns=["utterance", "map", "method", "words", "start_ms", "end_ms"]).to_csv(
            run / "timestamps.tsv", sep="\t", index=False
        )
        files.append(str(run / "timestamps.tsv"))
    paths = make_figure("timestamps", {"timestamps": files}, tmp_path / "paper/timestamps.png")
    groups = timestamp_bars(files, {})
    assert list(groups) == ["base en", "small en"] and list(groups["base en"]) == ["CA l1", "CA l2", "CA all"]
    expected = plot_bars(
        groups, "mean |word start error| (ms), DTW", tmp_path / "ref", title="Word timestamps from each map"
    )
    assert _same_files(paths, expected)


def test_make_figure_rejects_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fig5"):
        make_figure("fig5", {}, tmp_path / "fig5.png")
    with pytest.raises(ValueError, match="fig4"):
        utterance_figure("fig4", "x.zip", "h.zip", "s.zip", 0, tmp_path / "f")
