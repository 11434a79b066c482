"""Rule paper_figure: Figure 2 (SM^X, SM^H and CA of one utterance), Figure 3 (per-token SM^X over
log frequency) or Figure 4 (ASR/ST pairs per source language)."""

from pathlib import Path

from caspes.core.runlog import setup_rule_logging
from caspes.report.figure_data import figure_maps, timestamp_bars
from caspes.report.figures import plot_bars, plot_grid, plot_maps, plot_token_spectrograms
from caspes.report.results import run_of

snakemake = snakemake  # type: ignore[name-defined]  # noqa: F821 - injected by Snakemake
log = setup_rule_logging(snakemake.log[0])
fig, inp, p = snakemake.wildcards.figure, snakemake.input, snakemake.params
prefix = Path(snakemake.output.png).with_suffix("")
if fig == "timestamps":
    groups = timestamp_bars(inp.timestamps, p.bootstrap)
    plot_bars(groups, "mean |word start error| (ms), DTW", prefix, title="Word timestamps from each map")
elif fig in ("fig2", "fig3"):
    run = run_of(Path(inp.xattn[0]).parent / "x" / "x.tsv")
    m = figure_maps(inp.xattn[0], inp.smh[0], p.utterance, inp.smx[0], p.pooling)
    title = f"{run.model} {run.direction} {run.split}: {m['id']}"
    if fig == "fig2":
        panels = [
            (f"SM^X ({p.pooling})", m["smx_pooled"]),
            ("SM^H", m["smh"]),
            ("CA (all layers and heads)", m["ca"]),
        ]
        plot_maps(panels, m["tokens"], prefix, title=title)
    else:
        plot_token_spectrograms(m["smx"], m["tokens"], prefix, title=title)
else:
    by_src: dict[str, list] = {}
    for xattn, smh in zip(inp.xattn, inp.smh):
        run = run_of(Path(xattn).parent / "x" / "x.tsv")
        m = figure_maps(xattn, smh, p.utterance)
        by_src.setdefault(run.src, []).extend([
            (f"{run.task} {run.direction}: CA", m["ca"], m["tokens"]),
            (f"{run.task} {run.direction}: SM^H", m["smh"], m["tokens"]),
        ])  # fmt: skip
    width = max(len(cells) for cells in by_src.values())
    rows = [cells + [None] * (width - len(cells)) for cells in by_src.values()]
    plot_grid(rows, prefix, title=f"{run.model} {run.split}: utterance {p.utterance} of each source language")
log.info("wrote %s.png and .pdf", prefix)
