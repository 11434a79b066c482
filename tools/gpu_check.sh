#!/usr/bin/env bash
# The GPU checks of caspes in one run (a few minutes on an H100/H200): the GPU unit tests, then the
# SPES benchmark at the paper's base model size (T = 1000 frames, I = 30 tokens) in bf16, which also
# runs fp32 on the same masks (speed-up and map agreement) and profiles the engine's phases; its
# extrapolation is the EuroParl-ST en test set (1,130 utterances x 20,000 masks); then the same
# engines with torch.compile'd encoder and decoder (compile time, speed-up, map agreement).
# Everything goes to one JSON file (and the logs beside it).
#
#   bash tools/gpu_check.sh [OUTDIR]        (default: gpu_check/; needs a CUDA device)
#   GPU_CHECK_SMOKE=1 bash tools/gpu_check.sh /tmp/gc   (the same steps on the CPU at a tiny size, to
#                                                        check the script itself; about a minute)
#
# Runs from the source tree (PYTHONPATH=src): a machine with torch, torchaudio, numpy, scipy,
# scikit-image, sentencepiece, tqdm and pytest needs no install (soundfile, jiwer and snakemake are
# not imported by these checks).  Every step has its own timeout, so a hung kernel cannot eat the budget.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-gpu_check}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
cd "$ROOT"
start=$(date +%s)

"$PY" - > "$OUTDIR/device.json" <<'EOF'
import json, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
if info["available"]:
    p = torch.cuda.get_device_properties(0)
    info |= {"name": p.name, "memory_GiB": round(p.total_memory / 2**30, 1), "sm": p.multi_processor_count,
             "bf16": torch.cuda.is_bf16_supported()}
print(json.dumps(info))
EOF
if [[ ${GPU_CHECK_SMOKE:-0} == 1 ]]; then
  bench_args=(--dims tiny --device cpu --frames 250 --tokens 15 --masks 60 --loop-masks 6 --repeat 1)
  compile_args=(--dims tiny --device cpu --frames 250 --tokens 15 --masks 30 --loop-masks 3 --repeat 1
                --compile --compile-backend eager)
else
  bench_args=(--dims base --device cuda --frames 1000 --tokens 30 --masks 6000 --h-masks 6000
              --loop-masks 30 --repeat 2)
  compile_args=(--dims base --device cuda --frames 1000 --tokens 30 --masks 3000 --h-masks 3000
                --loop-masks 3 --repeat 1 --compile)
fi
if [[ ${GPU_CHECK_SMOKE:-0} != 1 ]] && ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device here ($(cat "$OUTDIR/device.json"))" >&2
  exit 2
fi

# 1. GPU unit tests (pytest -m gpu)
timeout -k 10 180 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/unit/test_spes.py \
  > "$OUTDIR/pytest.log" 2>&1
pytest_rc=$?
# 2. benchmark at the base size, bf16 against fp32 (JSON from the benchmark itself)
timeout -k 10 360 "$PY" tools/bench_spes.py "${bench_args[@]}" --bf16 --utterances 1130 \
  --json "$OUTDIR/bench.json" > "$OUTDIR/bench.log" 2>&1
bench_rc=$?
# 3. the same engines with torch.compile'd encoder and decoder (inductor; eager backend in the smoke)
timeout -k 10 240 "$PY" tools/bench_spes.py "${compile_args[@]}" --bf16 --utterances 1130 \
  --json "$OUTDIR/compile.json" > "$OUTDIR/compile.log" 2>&1
compile_rc=$?

"$PY" - "$OUTDIR" "$pytest_rc" "$bench_rc" "$(( $(date +%s) - start ))" "${GPU_CHECK_SMOKE:-0}" "$compile_rc" <<'EOF'
import json, pathlib, sys
out, pytest_rc, bench_rc, seconds = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
smoke, compile_rc = sys.argv[5] == "1", int(sys.argv[6])
tail = (out / "pytest.log").read_text().strip().splitlines()
bench = out / "bench.json"
result = {
    "device": json.loads((out / "device.json").read_text()),
    "pytest_gpu": {"exit_code": pytest_rc, "summary": tail[-1] if tail else ""},
    "bench_exit_code": bench_rc,
    "smoke": smoke,
    "bench": json.loads(bench.read_text()) if bench.exists() else None,
    "compile_exit_code": compile_rc,
    "compile": json.loads((out / "compile.json").read_text()) if (out / "compile.json").exists() else None,
    "seconds": seconds,
}
(out / "gpu_check.json").write_text(json.dumps(result, indent=2))
b = result["bench"] or {}
print(json.dumps({k: b.get(k) for k in ("device", "sm_x_masks_per_s", "sm_x_fraction_of_peak",
      "cost_per_mask_sm_x_over_sm_h", "sm_x_bf16_speedup", "sm_x_bf16_vs_fp32_r_median_row", "hours_sm_x")}
      | {k: (result["compile"] or {}).get(k) for k in ("compile_seconds_first_calls", "sm_x_compile_speedup",
         "sm_h_compile_speedup", "sm_x_compiled_vs_eager_r_min_row")}
      | {"pytest": result["pytest_gpu"]["summary"], "seconds": seconds}, indent=1))
EOF
echo "gpu_check: $OUTDIR/gpu_check.json (pytest exit $pytest_rc, benchmark exit $bench_rc, compile exit $compile_rc)"
[[ $pytest_rc -eq 0 && $bench_rc -eq 0 && $compile_rc -eq 0 ]]
