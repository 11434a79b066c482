"""Drawing Figures 2-4 of the paper (saliency / cross-attention heatmaps) and the timestamps bars,
written as PNG and PDF.

* :func:`plot_maps` (Figure 2): ``SM^X``, ``SM^H`` and ``CA`` of one utterance, stacked, each an
  ``(I, T')`` map with the target tokens on the y axis and seconds on the x axis.
* :func:`plot_token_spectrograms` (Figure 3): the full-resolution ``(T, F)`` input saliency of each
  token, frequency in Hz on a logarithmic axis (Kaldi mel bin centres, :func:`mel_bin_centres`).
* :func:`plot_grid` (Figure 4): a rows x columns grid of ``(I, T')`` maps (e.g. source language x
  {ASR, ST} x {CA, SM^H}).
* :func:`plot_bars`: grouped bars with error bars (the word-timestamps figure, beyond the paper).

Everything is drawn on :class:`matplotlib.figure.Figure` objects (no pyplot, no global backend
state), and :func:`save_figure` writes byte-identical files for identical input (no creation date
in the PDF).  ``NaN`` entries are drawn blank; an all-``NaN`` map gets the colour range ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

__all__ = ["mel_bin_centres", "save_figure", "plot_maps", "plot_token_spectrograms", "plot_grid", "plot_bars"]

PNG_DPI = 150


CMAP = matplotlib.colormaps["viridis"].with_extremes(bad="white")


FREQ_TICKS = (100.0, 300.0, 1000.0, 3000.0, 8000.0)


Cell = tuple[str, np.ndarray, Sequence[str]]


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def _inverse_mel(m: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(np.asarray(m, dtype=np.float64) / 1127.0)


def _mel_range(sample_rate: int, low_freq: float, high_freq: float) -> tuple[float, float]:
    nyquist = 0.5 * sample_rate
    high = high_freq if high_freq > 0 else nyquist + high_freq
    if not 0.0 <= low_freq < high <= nyquist:
        raise ValueError(f"need 0 <= low_freq < high_freq <= {nyquist}, got {low_freq}, {high}")
    return low_freq, high


def mel_bin_centres(
    n_mels: int = 80, sample_rate: int = 16000, low_freq: float = 20.0, high_freq: float = 0.0
) -> np.ndarray:
    """Centre frequency (Hz) of each Kaldi mel bin, shape ``(n_mels,)``, increasing.

    As ``torchaudio.compliance.kaldi.fbank``: ``n_mels + 2`` edge points equally spaced in mel
    (``1127 ln(1 + f / 700)``) between ``low_freq`` and ``high_freq``; bin ``m`` is centred on
    edge point ``m + 1``.  ``high_freq <= 0`` means ``Nyquist + high_freq`` (Kaldi's convention).
    """
    low, high = _mel_range(sample_rate, low_freq, high_freq)
    mel_low, mel_high = float(_mel(low)), float(_mel(high))
    delta = (mel_high - mel_low) / (n_mels + 1)
    return _inverse_mel(mel_low + delta * np.arange(1, n_mels + 1))


def _mel_cell_edges(n_mels: int, sample_rate: int, low_freq: float, high_freq: float) -> np.ndarray:
    """``n_mels + 1`` cell boundaries (Hz) for drawing: each bin centre +- half a mel step (cells
    equally wide in mel), the top one stretched to ``high_freq`` so the axis reaches the band edge."""
    _, high = _mel_range(sample_rate, low_freq, high_freq)
    centres = _mel(mel_bin_centres(n_mels, sample_rate, low_freq, high_freq))
    step = (centres[-1] - centres[0]) / (n_mels - 1) if n_mels > 1 else centres[0] - _mel(low_freq)
    edges = _inverse_mel(np.concatenate([centres - 0.5 * step, [centres[-1] + 0.5 * step]]))
    edges[-1] = high
    return edges


def save_figure(fig: Figure, out_prefix: str | Path) -> list[Path]:
    """Write ``<prefix>.png`` (150 dpi) and ``<prefix>.pdf``; return the two paths.

    Parent directories are created.  The PDF carries no ``CreationDate`` (and the PNG has none by
    default), so saving the same figure twice gives identical bytes.  The figure is released
    afterwards (its artists are cleared); do not reuse it.
    """
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = prefix.with_name(prefix.name + ".png"), prefix.with_name(prefix.name + ".pdf")
    fig.savefig(png, dpi=PNG_DPI, format="png")
    fig.savefig(pdf, format="pdf", metadata={"CreationDate": None})
    fig.clear()
    return [png, pdf]


def _limits(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def _token_fontsize(n_tokens: int) -> float:
    """9 pt up to 10 tokens, shrinking linearly to 5 pt at 40 tokens (and no smaller)."""
    return float(np.clip(9.0 - (n_tokens - 10) * 4.0 / 30.0, 5.0, 9.0))


def _as_map(name: str, values: np.ndarray, tokens: Sequence[str]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != len(tokens) or arr.shape[1] == 0 or not tokens:
        raise ValueError(
            f"panel {name!r}: map of shape {arr.shape} does not match (len(tokens)={len(tokens)}, T' > 0)"
        )
    return arr


def _draw_map(
    fig: Figure, ax: Axes, arr: np.ndarray, tokens: Sequence[str], seconds: float, cbar_width: float = 0.02
) -> None:
    """Heatmap of an ``(I, T')`` map on ``ax`` with a full-height colourbar (``cbar_width`` in axes
    fractions) just right of it."""
    n_tokens, n_frames = arr.shape
    vmin, vmax = _limits(arr)
    image = ax.imshow(
        np.ma.masked_invalid(arr),
        aspect="auto",
        origin="upper",
        interpolation="nearest",
        cmap=CMAP,
        vmin=vmin,
        vmax=vmax,
        extent=(0.0, n_frames * seconds, n_tokens - 0.5, -0.5),
    )
    ax.set_yticks(np.arange(n_tokens), labels=list(tokens), fontsize=_token_fontsize(n_tokens))
    ax.tick_params(axis="x", labelsize=8)
    colourbar = fig.colorbar(image, cax=ax.inset_axes((1.01, 0.0, cbar_width, 1.0)))
    colourbar.ax.tick_params(labelsize=7)


def _maps_figure(
    panels: Sequence[tuple[str, np.ndarray]],
    tokens: Sequence[str],
    title: str = "",
    frame_seconds: float = 0.04,
) -> Figure:
    """Build (without saving) the :func:`plot_maps` figure."""
    if not panels:
        raise ValueError("no panels to plot")
    arrays = [_as_map(name, values, tokens) for name, values in panels]
    panel_height = max(1.8, 0.16 * len(tokens) + 0.9)
    fig = Figure(figsize=(10.0, panel_height * len(panels) + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, _), arr in zip(axes, panels, arrays):
        _draw_map(fig, ax, arr, tokens, frame_seconds)
        ax.set_title(name, fontsize=10)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return fig


def plot_maps(
    panels: Sequence[tuple[str, np.ndarray]],
    tokens: Sequence[str],
    out_prefix: str | Path,
    title: str = "",
    frame_seconds: float = 0.04,
) -> list[Path]:
    """Figure 2 style: one ``(len(tokens), T')`` heatmap per ``(name, map)`` panel, stacked
    vertically on a shared time axis (seconds = frame index * ``frame_seconds``), token pieces on
    the y axis, a colourbar per panel.  A panel of another shape raises :class:`ValueError` naming
    it.  Returns the PNG and PDF paths (:func:`save_figure`)."""
    return save_figure(_maps_figure(panels, tokens, title, frame_seconds), out_prefix)


def _token_spectrogram_figure(
    saliency: np.ndarray,
    tokens: Sequence[str],
    title: str = "",
    frame_seconds: float = 0.01,
    sample_rate: int = 16000,
    max_tokens: int = 12,
) -> Figure:
    """Build (without saving) the :func:`plot_token_spectrograms` figure."""
    arr = np.asarray(saliency, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] != len(tokens) or not tokens or 0 in arr.shape:
        raise ValueError(f"saliency of shape {arr.shape} is not (len(tokens)={len(tokens)}, T, F)")
    shown = arr[: max(1, max_tokens)]
    n_shown, n_frames, n_mels = shown.shape
    ncols = min(4, n_shown)
    nrows = math.ceil(n_shown / ncols)
    fig = Figure(figsize=(2.6 * ncols + 0.9, 2.1 * nrows + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    times = np.arange(n_frames + 1) * frame_seconds
    freqs = _mel_cell_edges(n_mels, sample_rate, 20.0, 0.0)
    vmin, vmax = _limits(shown)
    style = {"cmap": CMAP, "vmin": vmin, "vmax": vmax}
    ticks = [f for f in FREQ_TICKS if freqs[0] <= f <= freqs[-1]]
    mesh = None
    for index, ax in enumerate(axes.flat):
        if index >= n_shown:
            ax.set_axis_off()
            continue
        mesh = ax.pcolormesh(times, freqs, np.ma.masked_invalid(shown[index].T), shading="flat", **style)
        ax.set_yscale("log")
        ax.set_ylim(freqs[0], freqs[-1])
        ax.yaxis.set_minor_locator(NullLocator())
        ax.set_yticks(ticks, labels=[f"{f / 1000:g}k" if f >= 1000 else f"{f:g}" for f in ticks])
        ax.set_title(tokens[index], fontsize=9)
        ax.tick_params(labelsize=7)
        if index % ncols == 0:
            ax.set_ylabel("frequency (Hz)", fontsize=8)
        if index + ncols >= n_shown:  # nothing below: label the time axis (sharex hid it above blanks)
            ax.set_xlabel("time (s)", fontsize=8)
            ax.xaxis.set_tick_params(labelbottom=True)
    fig.colorbar(mesh, ax=axes, pad=0.01, fraction=0.03)
    if title:
        fig.suptitle(title)
    return fig


def plot_token_spectrograms(
    saliency: np.ndarray,
    tokens: Sequence[str],
    out_prefix: str | Path,
    title: str = "",
    frame_seconds: float = 0.01,
    sample_rate: int = 16000,
    max_tokens: int = 12,
) -> list[Path]:
    """Figure 3 style: the ``(T, F)`` input saliency of each of the first ``max_tokens`` tokens of
    an ``(I, T, F)`` array (``I == len(tokens)``, else :class:`ValueError`), up to 4 per row,
    seconds on x and the Kaldi mel bin frequencies on a log-Hz y axis (ticks 100, 300, 1k, 3k,
    8k), one colour scale shared by all panels.  Returns the PNG and PDF paths."""
    fig = _token_spectrogram_figure(saliency, tokens, title, frame_seconds, sample_rate, max_tokens)
    return save_figure(fig, out_prefix)


def _grid_figure(
    cells: Sequence[Sequence[Cell | None]], title: str = "", frame_seconds: float = 0.04
) -> Figure:
    """Build (without saving) the :func:`plot_grid` figure."""
    nrows, ncols = len(cells), max((len(row) for row in cells), default=0)
    if nrows == 0 or ncols == 0:
        raise ValueError("empty grid")
    checked = [
        [None if cell is None else (cell[0], _as_map(cell[0], cell[1], cell[2]), cell[2]) for cell in row]
        for row in cells
    ]
    most_tokens = max((len(cell[2]) for row in checked for cell in row if cell is not None), default=1)
    row_height = max(2.2, 0.15 * most_tokens + 1.0)
    fig = Figure(figsize=(3.6 * ncols, row_height * nrows + (0.4 if title else 0.0)), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r, c]
            cell = checked[r][c] if c < len(checked[r]) else None
            if cell is None:
                ax.set_axis_off()
                continue
            subtitle, arr, tokens = cell
            _draw_map(fig, ax, arr, tokens, frame_seconds, cbar_width=0.05)
            ax.set_title(subtitle, fontsize=9)
            ax.set_xlabel("time (s)", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_grid(
    cells: Sequence[Sequence[Cell | None]],
    out_prefix: str | Path,
    title: str = "",
    frame_seconds: float = 0.04,
) -> list[Path]:
    """Figure 4 style: a rows x columns grid of heatmaps; each cell is ``(subtitle, (I, T') map,
    tokens)`` or ``None`` (blank; short rows are padded with blanks), token pieces on y, seconds on
    x, a colourbar per cell.  A map whose shape is not ``(len(tokens), T')`` raises
    :class:`ValueError` naming its subtitle.  Returns the PNG and PDF paths."""
    return save_figure(_grid_figure(cells, title, frame_seconds), out_prefix)


def _bars_figure(
    groups: dict[str, dict[str, tuple[float, float, float]]], ylabel: str, title: str = ""
) -> Figure:
    labels = list(dict.fromkeys(k for bars in groups.values() for k in bars))
    fig = Figure(figsize=(max(6.0, 1.2 + 0.45 * len(labels) * len(groups)), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(labels), 1)
    cmap = matplotlib.colormaps["viridis"]
    for k, label in enumerate(labels):
        xs, ys, errs = [], [], [[], []]
        for g, bars in enumerate(groups.values()):
            if label not in bars:
                continue
            value, low, high = bars[label]
            xs.append(g + (k - (len(labels) - 1) / 2) * width)
            ys.append(value)
            errs[0].append(max(value - low, 0.0) if math.isfinite(low) else 0.0)
            errs[1].append(max(high - value, 0.0) if math.isfinite(high) else 0.0)
        ax.bar(xs, ys, width, yerr=errs, capsize=2, label=label, color=cmap(k / max(len(labels) - 1, 1)))
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=min(len(labels), 4))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_bars(
    groups: dict[str, dict[str, tuple[float, float, float]]],
    ylabel: str,
    out_prefix: str | Path,
    title: str = "",
) -> list[Path]:
    """Grouped bar chart with error bars: ``groups[group][bar] = (value, low, high)`` (NaN bounds:
    no error bar), e.g. the mean word-start error of each map per model and language."""
    if not groups:
        raise ValueError("plot_bars needs at least one group")
    return save_figure(_bars_figure(groups, ylabel, title), out_prefix)
