"""Benchmark of the SPES saliency engine (:mod:`caspes.spes`): masks/s, FLOPs, memory, extrapolation.

Random (seeded) weights, random CMVN-like features (T x 80, standard normal) and a random decoder
input ``[EOS, ...]`` of I ids (no PAD).  One run measures
  (a) SM^X with the batched engine (``explain_input``; SLIC excluded from the timing, timed apart);
  (b) a naive loop: one encoder+decoder forward per mask, KL, dense accumulation, on the engine's
      own masks (same RNG protocol), so it also cross-checks the engine's map on ``--loop-masks``;
  (c) SM^H with the engine (``explain_encoder``, p_H 0.7) and the SM^X/SM^H cost per mask;
  (d) matmul/conv FLOPs per mask (FlopCounterMode, SDPA forced onto the math path so attention is
      counted on every device) -> achieved TFLOP/s and fraction of the device peak;
  (e) peak memory: CUDA max allocated, or CPU peak-RSS growth per phase;
  (f) hours for ``--utterances`` utterances with N_X = N_H = 20000 masks each at the measured rates;
  (g) a per-phase profile of the SM^X and SM^H engines (torch.profiler over the engine's own
      ``spes.*`` labels: mask, encoder, decoder, KL, accumulation; the rest is "other");
  (h) with ``--bf16``: the same engines in fp32 in the same run (speed-up, and the Pearson r
      between the bf16 and the fp32 map of the same masks);
  (i) with ``--depthwise-baseline``: SM^X and SM^H again with oneDNN's depthwise convolution
      (``F.conv1d``) in place of the Conformer's banded matmuls (``caspes.model.conformer``) in
      the same run: masks/s, the speed-up of the banded kernel, and r between the two maps;
  (k) with ``--retain-freed-memory``: SM^X and SM^H again after
      :func:`caspes.core.allocator.retain_freed_memory` (glibc keeps freed memory instead of
      mapping every large tensor anew, as the workflow's saliency jobs do) in the same run: masks/s,
      the speed-up, the fraction of the peak, and whether the maps are bit-identical (they must be);
  (j) with ``--compile``: the encoder and decoder compiled (``torch.compile``, dynamic shapes,
      :func:`caspes.model.inference.compile_stacks`) in the same run, after everything above: the
      compile time of the first call, masks/s, the speed-up over eager, and r(compiled, eager map).
Engine timings include its per-call work (clean pass, mask draws, CUDA batch-size probe).

Examples:
  OMP_NUM_THREADS=1 python tools/bench_spes.py --dims tiny --device cpu --frames 250 --tokens 15 \\
      --masks 256 --loop-masks 32 --threads 1
  python tools/bench_spes.py --dims tiny --device cpu --bf16 --frames 250 --tokens 15 --masks 600 \
      --loop-masks 60 --threads 2
  python tools/bench_spes.py --dims base --device cuda --bf16 --frames 1000 --tokens 30
  python tools/bench_spes.py --dims path/to/avg.pt --device cuda --bf16 --json bench.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import re
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from caspes.core.allocator import retain_freed_memory
from caspes.explain.segment import segment_levels
from caspes.explain.spes import (
    PHASES,
    OcclusionOptions,
    explain_encoder,
    explain_input,
    masks_per_level,
    utterance_seed,
)
from caspes.model import PAPER_DIMENSIONS, ModelDimensions, S2TModel
from caspes.model.conformer import depthwise_block
from caspes.model.inference import autocast_bf16, compile_stacks

#: config.yaml's tiny model dimensions, with the 512-piece vocabulary of its en_it tokenizer.
TINY = ModelDimensions(
    d_model=144,
    encoder_layers=4,
    decoder_layers=2,
    encoder_heads=4,
    decoder_heads=4,
    encoder_ffn=576,
    decoder_ffn=576,
    vocab_size=512,
    conv_channels=288,
    ctc_src_layer=3,
)
#: Dense peak TFLOP/s (bf16 tensor cores, fp32 without tensor cores) by device-name pattern, first match.
PEAKS = [
    ("H100.*PCIe", 756.0, 51.0),
    ("H100 NVL", 835.0, 60.0),
    ("H100|H200", 989.0, 67.0),
    ("A100", 312.0, 19.5),
    (r"\bA40\b", 149.7, 37.4),
]
P_X, P_H, PAPER_MASKS, UID = 0.5, 0.7, 20000, "bench"


def proc_mib(field: str) -> float | None:
    """A /proc/self/status memory field (VmRSS, VmHWM) in MiB; None where there is none."""
    with contextlib.suppress(OSError), open("/proc/self/status") as fh:
        return next((int(ln.split()[1]) / 1024 for ln in fh if ln.startswith(field + ":")), None)
    return None


def best_of(repeat: int, fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """:func:`measure` ``repeat`` times: (last result, fastest seconds, largest MiB)."""
    runs = [measure(fn, device) for _ in range(max(1, repeat))]
    return runs[-1][0], min(run[1] for run in runs), max(run[2] for run in runs)


def measure(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float, float]:
    """(result, seconds, MiB): CUDA max allocated; CPU peak RSS minus RSS at the start (VmHWM reset
    through /proc/self/clear_refs), else the getrusage max-RSS delta (a process high-water mark)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = None
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
        fh.flush()
        start = proc_mib("VmRSS")
    maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    if cuda:
        return out, seconds, torch.cuda.max_memory_allocated(device) / 2**20
    hwm = proc_mib("VmHWM")
    if start is not None and hwm is not None:
        return out, seconds, hwm - start
    return out, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - maxrss0


def build_model(spec: str, device: torch.device, seed: int) -> S2TModel:
    if spec not in ("tiny", *PAPER_DIMENSIONS):
        from caspes.model.checkpoint import load_model

        return load_model(spec, device)[0]
    torch.manual_seed(seed)
    return S2TModel(TINY if spec == "tiny" else PAPER_DIMENSIONS[spec]).to(device).eval()


def loop_baseline(
    model: S2TModel, x: Tensor, dec: Tensor, levels: list[np.ndarray], opts: OcclusionOptions
) -> np.ndarray:
    """Naive SM^X: one forward per mask (the engine's masks), fp32 KL, dense (I, T*F) accumulation."""
    device, (t, f), rows = x.device, x.shape, dec.size(1)
    labels = [torch.as_tensor(lab.astype(np.int64), device=device).reshape(-1) for lab in levels]
    per_level = masks_per_level(opts.n_masks, len(labels))
    gen = torch.Generator(device=device).manual_seed(utterance_seed(opts.seed, UID))
    lengths = torch.tensor([t], device=device)

    def log_probs(inp: Tensor) -> Tensor:
        with autocast_bf16(device, opts.autocast_bf16):
            enc = model.encode(inp.view(1, t, f), lengths)
            logits = model.decode_teacher_forced(enc.states, enc.lengths, dec).logits
        return torch.log_softmax(logits[0].float(), dim=-1)

    with torch.inference_mode():
        clean = log_probs(x)
        num = torch.zeros(rows, t * f, dtype=torch.float64, device=device)
        cnt = torch.zeros(t * f, dtype=torch.float64, device=device)
        for lab in labels:
            keep = torch.rand(per_level, int(lab.max()) + 1, generator=gen, device=device) >= opts.p
            for k in keep:
                cells = k[lab]
                q = log_probs(x.reshape(-1) * cells.to(x.dtype))
                kl = (clean.exp() * (clean - q)).sum(-1).clamp_min(0.0)  # (I,)
                occluded = (~cells).double()
                num += kl.double()[:, None] * occluded[None]
                cnt += occluded
        sal = torch.where(cnt > 0, num / cnt.clamp_min(1), torch.zeros_like(num))
    return sal.view(rows, t, f).float().cpu().numpy()


def flops_per_mask(model: S2TModel, x: Tensor, dec: Tensor, batch: int, encoder: bool) -> float:
    """Matmul/conv FLOPs of one forward of ``batch`` masked copies / batch, counted in the model's
    dtype (the count is the same under bf16 autocast).  ``encoder``: SM^X (encoder and decoder
    per mask); else SM^H as the engine runs it (the decoder over cross-attention keys and values
    projected once per utterance, :meth:`S2TModel.encoder_occlusion`, which is not counted)."""
    lengths = torch.full((batch,), x.size(0), device=x.device)
    xb = x.expand(batch, -1, -1).contiguous()
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]):  # FLOPs do not depend on the dtype
        if encoder:
            with FlopCounterMode(display=False) as counter:
                enc = model.encode(xb, lengths)
                model.decode_teacher_forced(enc.states, enc.lengths, dec.expand(batch, -1))
            return counter.get_total_flops() / batch
        states = model.encode(xb[:1], lengths[:1]).states
        occluded = model.encoder_occlusion(states)
        keep = torch.ones(batch, states.size(1), dtype=torch.bool, device=x.device)
        with FlopCounterMode(display=False) as counter:
            occluded(keep, dec.expand(batch, -1))
    return counter.get_total_flops() / batch


def device_peak(device: torch.device, bf16: bool, user: float | None) -> tuple[float | None, str]:
    """(peak TFLOP/s or None, where it comes from)."""
    if user:
        return user, "user (--peak-tflops)"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for pattern, bf16_peak, fp32_peak in PEAKS:
            if re.search(pattern, name):
                return (bf16_peak, "table: bf16 dense") if bf16 else (fp32_peak, "table: fp32 non-tensor")
        return None, "unknown peak"
    n = 2048
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(measure(lambda: a @ b, device)[1] for _ in range(10))
    name = "bf16" if bf16 else "fp32"
    return 2 * n**3 / best / 1e12, f"measured matmul peak ({name} {n}x{n}x{n}, best of 10)"


def phase_profile(run: Callable[[], Any], device: torch.device) -> dict[str, float]:
    """Share of ``run()``'s wall time in each engine phase (``spes.PHASES``), and "other".

    The profiler's own per-op cost inflates small ops, so the shares are indicative; the absolute
    rates come from the unprofiled runs."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, acc_events=True) as prof:
        t0 = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    totals = {e.key: e for e in prof.key_averages()}
    shares: dict[str, float] = {}
    for phase, label in PHASES.items():
        event = totals.get(label)
        if event is None:
            continue
        micros = event.device_time_total if device.type == "cuda" else event.cpu_time_total
        shares[phase] = round(micros / 1e6 / wall, 4)
    shares["other"] = round(max(0.0, 1.0 - sum(shares.values())), 4)
    return shares


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = ap.add_argument
    add(
        "--dims", default="tiny", help="base|small|large|tiny (paper sizes / config.yaml) or a checkpoint .pt"
    )
    add("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add("--bf16", action="store_true", help="bf16 autocast (CUDA or CPU; the KL stays fp32); fp32 is run too")
    add("--frames", type=int, default=1000, help="T, feature frames")
    add("--tokens", type=int, default=30, help="I, decoder input length (rows scored)")
    add("--masks", type=int, default=None, help="masks of the batched runs (default: 6000 CUDA, 300 CPU)")
    add("--h-masks", type=int, default=None, help="masks of the SM^H run (default: --masks)")
    add("--loop-masks", type=int, default=30, help="masks of the one-mask-per-forward baseline")
    add("--batch-size", type=int, default=None, help="masks per forward (default: the engine's choice)")
    add("--flop-batch", type=int, default=4, help="batch of the FLOP-counting forward")
    add("--threads", type=int, default=None, help="torch CPU threads")
    add("--repeat", type=int, default=1, help="timed runs of each measurement; the fastest is kept")
    add("--seed", type=int, default=1)
    add("--utterances", type=int, default=1000, help="utterances of the extrapolation")
    add("--peak-tflops", type=float, default=None, help="device peak TFLOP/s (overrides table/matmul)")
    add("--compile", action="store_true", help="also time the engines with torch.compile'd stacks")
    add(
        "--compile-backend", default="inductor", help="torch.compile backend of --compile (eager: trace only)"
    )
    add(
        "--depthwise-baseline",
        action="store_true",
        help="also time the engines with F.conv1d as the Conformer's depthwise convolution",
    )
    add(
        "--retain-freed-memory",
        action="store_true",
        help="also time the engines with glibc keeping freed memory (the saliency jobs' setting)",
    )
    add("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.frames < 1 or args.tokens < 1 or args.loop_masks < 3 or (args.masks or 3) < 3:
        ap.error("--frames and --tokens must be >= 1, --masks and --loop-masks >= 3 (one per SLIC level)")
    return args


def row_correlations(a, b) -> list[float]:
    """Pearson r, token row by token row, between the saliency of two engine results of the same masks."""
    x, y = (m.saliency.reshape(m.saliency.shape[0], -1) for m in (a, b))
    return [float(np.corrcoef(x[i], y[i])[0, 1]) for i in range(x.shape[0])]


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    bf16 = args.bf16
    model = build_model(args.dims, device, args.seed)
    masks = args.masks or (6000 if use_cuda else 300)
    dims, n_h = model.dims, args.h_masks or masks
    rng = np.random.default_rng(args.seed)
    feats = rng.standard_normal((args.frames, dims.n_mels)).astype(np.float32)
    ids = rng.integers(0, dims.vocab_size - 1, size=args.tokens - 1)
    decoder_input = [dims.eos_id] + [int(i) + int(i >= dims.pad_id) for i in ids]  # ids skip PAD
    x, dec = torch.as_tensor(feats, device=device), torch.tensor([decoder_input], device=device)
    cpu_name = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu_name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu_name)
    t_enc = int(model.output_lengths(torch.tensor([args.frames]))[0])
    r: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if use_cuda else f"cpu ({cpu_name})",
        "dtype": "bf16 autocast (fp32 weights, fp32 KL)" if bf16 else "fp32",
        "threads": torch.get_num_threads(),
        "repeat": args.repeat,
        "fp32_matmul_precision": torch.get_float32_matmul_precision(),
        "dims": args.dims,
        "parameters_M": round(model.num_parameters() / 1e6, 2),
        "model": f"d_model {dims.d_model}, layers {dims.encoder_layers}/{dims.decoder_layers}, "
        f"heads {dims.encoder_heads}, vocab {dims.vocab_size}",
        "frames_T/encoder_T'/tokens_I": f"{args.frames}/{t_enc}/{args.tokens}",
    }
    t0 = time.perf_counter()
    levels, _ = segment_levels(feats)
    r["slic_seconds"] = round(time.perf_counter() - t0, 3)
    r["segments_per_level"] = [int(lab.max()) + 1 for lab in levels]
    opts = functools.partial(OcclusionOptions, seed=args.seed, batch_size=args.batch_size, autocast_bf16=bf16)

    def sm_x(n: int) -> Any:
        return explain_input(model, feats, decoder_input, levels, opts(n_masks=n, p=P_X), UID)

    def sm_h(n: int) -> Any:
        return explain_encoder(model, feats, decoder_input, opts(n_masks=n, p=P_H), UID)

    # (b) loop baseline (warm-up: one mask per level), then the engine on the same masks
    n_loop = masks_per_level(args.loop_masks, len(levels)) * len(levels)
    loop_baseline(model, x, dec, levels, opts(n_masks=len(levels), p=P_X))
    loop_sal, loop_s, loop_mem = best_of(
        args.repeat, lambda: loop_baseline(model, x, dec, levels, opts(n_masks=n_loop, p=P_X)), device
    )
    ref = sm_x(n_loop).saliency  # doubles as the SM^X warm-up on CPU
    # (a) SM^X batched engine; (c) SM^H engine (warm-up: the full run on CUDA, a short one on CPU)
    n_x = masks_per_level(masks, len(levels)) * len(levels)
    if use_cuda:
        sm_x(n_x)
    res_x, x_s, x_mem = best_of(args.repeat, lambda: sm_x(n_x), device)
    sm_h(n_h if use_cuda else min(n_h, n_loop))
    res_h, h_s, h_mem = best_of(args.repeat, lambda: sm_h(n_h), device)
    rate_x, rate_h, rate_loop = n_x / x_s, n_h / h_s, n_loop / loop_s
    diff = float(np.abs(loop_sal - ref).max())
    rel = diff / max(float(np.abs(ref).max()), 1e-30)
    r |= {
        "sm_x_masks": n_x,
        "sm_x_batch_size": res_x.batch_size,
        "sm_x_seconds": round(x_s, 3),
        "sm_x_masks_per_s": round(rate_x, 2),
        "loop_masks": n_loop,
        "loop_seconds": round(loop_s, 3),
        "loop_masks_per_s": round(rate_loop, 2),
        "speedup_batched_over_loop": round(rate_x / rate_loop, 2),
        "loop_vs_engine_max_abs_diff": f"{diff:.3g} (relative {rel:.3g})",
        "sm_h_masks": n_h,
        "sm_h_batch_size": res_h.batch_size,
        "sm_h_seconds": round(h_s, 3),
        "sm_h_masks_per_s": round(rate_h, 2),
        "cost_per_mask_sm_x_over_sm_h": round(rate_h / rate_x, 2),
    }
    # (d) FLOPs per mask (the loop's at batch 1: per-forward work is not shared) and throughput
    peak, r["peak_source"] = device_peak(device, bf16, args.peak_tflops)
    r["peak_tflops"] = round(peak, 3) if peak else None
    for key, rate, batch, enc in (
        ("sm_x", rate_x, args.flop_batch, True),
        ("sm_h", rate_h, args.flop_batch, False),
        ("loop", rate_loop, 1, True),
    ):
        achieved = (fpm := flops_per_mask(model, x, dec, batch, enc)) * rate / 1e12
        r[f"{key}_gflop_per_mask"] = round(fpm / 1e9, 3)
        r[f"{key}_achieved_tflops"] = round(achieved, 4)
        r[f"{key}_fraction_of_peak"] = round(achieved / peak, 4) if peak else "unknown peak"
    # (e) memory
    label = "cuda_max_allocated_MiB" if use_cuda else "cpu_peak_rss_growth_MiB"
    for key, mem in (("sm_x", x_mem), ("sm_h", h_mem), ("loop", loop_mem)):
        r[f"{key}_{label}"] = round(mem, 1)
    # (f) extrapolation at the measured rates
    hours = args.utterances * PAPER_MASKS / 3600
    r["extrapolation"] = (
        f"{args.utterances} utterances x {PAPER_MASKS} masks (T={args.frames}, I={args.tokens})"
    )
    r["hours_sm_x"] = round(hours / rate_x, 2)
    r["hours_sm_h"] = round(hours / rate_h, 2)
    r["hours_sm_x_loop_baseline"] = round(hours / rate_loop, 2)
    r["hours_slic_one_cpu_process"] = round(args.utterances * r["slic_seconds"] / 3600, 2)
    # (g) where the engine's time goes (a short run of each engine under the profiler)
    n_prof = max(len(levels), min(n_x, 4 * res_x.batch_size))
    r["sm_x_phase_shares"] = phase_profile(lambda: sm_x(n_prof), device)
    r["sm_h_phase_shares"] = phase_profile(lambda: sm_h(min(n_h, 4 * res_h.batch_size)), device)
    # (h) bf16 against fp32 in the same run: speed and agreement of the maps of the same masks
    if bf16:
        fp32 = functools.partial(opts, autocast_bf16=False)
        explain_input(model, feats, decoder_input, levels, fp32(n_masks=n_loop, p=P_X), UID)  # warm-up
        res_x32, x32_s, _ = best_of(
            args.repeat,
            lambda: explain_input(model, feats, decoder_input, levels, fp32(n_masks=n_x, p=P_X), UID),
            device,
        )
        res_h32, h32_s, _ = best_of(
            args.repeat,
            lambda: explain_encoder(model, feats, decoder_input, fp32(n_masks=n_h, p=P_H), UID),
            device,
        )
        for key, half, full, n, sec, sec32 in (
            ("sm_x", res_x, res_x32, n_x, x_s, x32_s),
            ("sm_h", res_h, res_h32, n_h, h_s, h32_s),
        ):
            r[f"{key}_masks_per_s_fp32"] = round(n / sec32, 2)
            r[f"{key}_bf16_speedup"] = round(sec32 / sec, 2)
            rows = row_correlations(half, full)
            r[f"{key}_bf16_vs_fp32_r_median_row"] = round(float(np.median(rows)), 5)
            r[f"{key}_bf16_vs_fp32_r_min_row"] = round(float(np.min(rows)), 5)

    def rerun_engines() -> tuple[tuple[str, Any, Any, int, float, float], ...]:
        """SM^X and SM^H again on the same masks: (key, first result, rerun, masks, seconds, seconds)."""
        res_xv, xv_s, _ = best_of(args.repeat, lambda: sm_x(n_x), device)
        res_hv, hv_s, _ = best_of(args.repeat, lambda: sm_h(n_h), device)
        return ("sm_x", res_x, res_xv, n_x, x_s, xv_s), ("sm_h", res_h, res_hv, n_h, h_s, hv_s)

    # (i) the depthwise-convolution baseline (F.conv1d) against the banded matmuls above, same masks
    if args.depthwise_baseline:
        with depthwise_block(0):
            sm_x(n_loop)  # warm-up
            runs = rerun_engines()
        for key, banded, base, n, sec, sec_d in runs:
            r[f"{key}_masks_per_s_conv1d_depthwise"] = round(n / sec_d, 2)
            r[f"{key}_banded_depthwise_speedup"] = round(sec_d / sec, 3)
            r[f"{key}_banded_vs_conv1d_r_min_row"] = round(min(row_correlations(banded, base)), 6)
    # (k) glibc keeping freed memory against its defaults above (same masks; lasts for the process,
    # so it runs after every default-allocator measurement and before --compile)
    if args.retain_freed_memory:
        r["allocator"] = retain_freed_memory()
        sm_x(n_loop)  # warm-up: the first batches grow the heap
        for key, default, kept, n, sec, sec_r in rerun_engines():
            r[f"{key}_masks_per_s_retained"] = round(n / sec_r, 2)
            r[f"{key}_retained_speedup"] = round(sec / sec_r, 3)
            r[f"{key}_retained_maps_identical"] = bool(np.array_equal(default.saliency, kept.saliency))
            if peak:  # the saliency jobs' setting: their fraction of the peak
                gflop = r[f"{key}_gflop_per_mask"] * 1e9
                r[f"{key}_fraction_of_peak_retained"] = round(gflop * n / sec_r / 1e12 / peak, 4)
    # (j) torch.compile'd encoder and decoder against the eager runs above (same masks, same dtype)
    if args.compile:
        compile_stacks(model, backend=args.compile_backend)
        r["compile_backend"] = args.compile_backend
        t0 = time.perf_counter()
        sm_x(n_loop)  # first call: compiles (the SM^H decoder compiles on its own first call)
        sm_h(min(n_h, n_loop))
        r["compile_seconds_first_calls"] = round(time.perf_counter() - t0, 1)
        for key, eager, comp, n, sec, sec_c in rerun_engines():
            r[f"{key}_masks_per_s_compiled"] = round(n / sec_c, 2)
            r[f"{key}_compile_speedup"] = round(sec / sec_c, 3)
            r[f"{key}_compiled_vs_eager_r_min_row"] = round(min(row_correlations(comp, eager)), 6)
    for key, value in r.items():
        print(f"{key}: {value}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2)


if __name__ == "__main__":
    main()
