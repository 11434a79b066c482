"""The paper's figures from the workflow's files (rule ``paper_figure``): which maps each figure
shows, from which stores, under which titles.

* ``fig2``: SM^X (pooled), SM^H and CA of one utterance of the ablation run (:func:`utterance_figure`);
* ``fig3``: the per-token SM^X of that utterance over log frequency (:func:`utterance_figure`);
* ``fig4``: CA and SM^H of one utterance per source language, ASR and ST (:func:`languages_figure`);
* ``timestamps``: the mean DTW word-start error of each map, per model and language
  (:func:`timestamps_figure`; beyond the paper).

The maps come from :mod:`caspes.report.figure_data`, the drawing from :mod:`caspes.report.figures`;
:func:`make_figure` picks one figure by name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from caspes.report.figure_data import figure_maps, timestamp_bars
from caspes.report.figures import plot_bars, plot_grid, plot_maps, plot_token_spectrograms
from caspes.report.results import Run, run_of

__all__ = ["FIGURES", "timestamps_figure", "utterance_figure", "languages_figure", "make_figure"]

log = logging.getLogger(__name__)

#: The figures :func:`make_figure` draws.
FIGURES = ("fig2", "fig3", "fig4", "timestamps")


def _store_run(xattn_path: str | Path) -> Run:
    """The run of a cross-attention store, which lies in the run folder itself (``<run>/xattn.zip``):
    parsed as if it were a file ``x/x.tsv`` inside it (the run's model, direction and split)."""
    return run_of(Path(xattn_path).parent / "x" / "x.tsv")


def timestamps_figure(
    files: Sequence[str | Path], out_prefix: str | Path, bootstrap: Mapping[str, object]
) -> list[Path]:
    """Bars of the mean DTW word-start error (with bootstrap intervals) of each map, per model and
    language, from the timestamps TSVs ``files``. Returns the PNG and PDF paths."""
    groups = timestamp_bars(files, bootstrap)
    return plot_bars(
        groups, "mean |word start error| (ms), DTW", out_prefix, title="Word timestamps from each map"
    )


def utterance_figure(
    name: str,
    xattn: str | Path,
    smh: str | Path,
    smx: str | Path,
    utterance: int,
    out_prefix: str | Path,
    pooling: str = "max2d",
    factor: int = 4,
) -> list[Path]:
    """Figure 2 (``name`` ``fig2``: SM^X pooled with ``pooling``, SM^H and CA, stacked) or Figure 3
    (``fig3``: the full-resolution SM^X of each token) of the ``utterance``-th explained utterance
    of one run, titled with the run and the utterance id. Returns the PNG and PDF paths."""
    if name not in ("fig2", "fig3"):
        raise ValueError(f"utterance_figure draws fig2 or fig3, not {name!r}")
    run = _store_run(xattn)
    m = figure_maps(xattn, smh, utterance, smx, pooling, factor=factor)
    title = f"{run.model} {run.direction} {run.split}: {m['id']}"
    if name == "fig3":
        return plot_token_spectrograms(m["smx"], m["tokens"], out_prefix, title=title)
    panels = [
        (f"SM^X ({pooling})", m["smx_pooled"]),
        ("SM^H", m["smh"]),
        ("CA (all layers and heads)", m["ca"]),
    ]
    return plot_maps(panels, m["tokens"], out_prefix, title=title, frame_seconds=0.01 * factor)


def languages_figure(
    xattn: Sequence[str | Path],
    smh: Sequence[str | Path],
    utterance: int,
    out_prefix: str | Path,
    factor: int = 4,
) -> list[Path]:
    """Figure 4: one grid row per source language, CA and SM^H of the ``utterance``-th explained
    utterance of each of its runs side by side (``xattn[k]`` and ``smh[k]`` of the same run; short
    rows padded with blanks), titled with the last run's model and split. Returns the PNG and PDF
    paths."""
    by_src: dict[str, list] = {}
    for xattn_path, smh_path in zip(xattn, smh):
        run = _store_run(xattn_path)
        m = figure_maps(xattn_path, smh_path, utterance)
        by_src.setdefault(run.src, []).extend([
            (f"{run.task} {run.direction}: CA", m["ca"], m["tokens"]),
            (f"{run.task} {run.direction}: SM^H", m["smh"], m["tokens"]),
        ])  # fmt: skip
    width = max(len(cells) for cells in by_src.values())
    rows = [cells + [None] * (width - len(cells)) for cells in by_src.values()]
    title = f"{run.model} {run.split}: utterance {utterance} of each source language"
    return plot_grid(rows, out_prefix, title=title, frame_seconds=0.01 * factor)


def make_figure(
    name: str,
    inputs: Mapping[str, Sequence[str | Path]],
    out_png: str | Path,
    utterance: int = 0,
    pooling: str = "max2d",
    bootstrap: Mapping[str, object] | None = None,
    factor: int = 4,
) -> list[Path]:
    """Rule ``paper_figure``: draw figure ``name`` (one of :data:`FIGURES`) as ``out_png`` and the
    PDF beside it. ``inputs`` as the rule hands them over: ``timestamps`` (TSVs) for the timestamps
    figure; else ``xattn``, ``smh`` and ``smx`` stores, one per run (fig2 and fig3 use the first run,
    fig4 every run and no SM^X). ``utterance`` indexes the explained utterances, ``pooling`` is
    SM^X's in Figure 2, ``bootstrap`` the interval settings of the timestamps bars, ``factor`` the
    shown model's subsampling (encoder step = ``factor`` x 10 ms). Returns the PNG and PDF paths."""
    prefix = Path(out_png).with_suffix("")
    if name == "timestamps":
        paths = timestamps_figure(inputs["timestamps"], prefix, bootstrap or {})
    elif name in ("fig2", "fig3"):
        xattn, smh, smx = inputs["xattn"][0], inputs["smh"][0], inputs["smx"][0]
        paths = utterance_figure(name, xattn, smh, smx, utterance, prefix, pooling, factor)
    elif name == "fig4":
        paths = languages_figure(inputs["xattn"], inputs["smh"], utterance, prefix, factor)
    else:
        raise ValueError(f"unknown figure {name!r} (known: {', '.join(FIGURES)})")
    log.info("wrote %s.png and .pdf", prefix)
    return paths
