#!/usr/bin/env bash
# The project's checks: unit and integration tests, linters, and workflow dry-runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

echo "== pytest"
set +e
$PYTHON -m pytest -m "not gpu" ${PYTEST_ARGS:-} tests
rc=$?
set -e
if [ $rc -eq 5 ]; then
  echo "test: pytest collected no tests (exit 5): the test suite is missing or every test was deselected" >&2
  exit 1
elif [ $rc -ne 0 ]; then
  exit $rc
fi

echo "== ruff"
$PYTHON -m ruff check src tests workflow/scripts tools
$PYTHON -m ruff format --check src tests workflow/scripts tools
echo "== import layering (lint-imports)"
lint-imports
echo "== snakefmt"
$PYTHON -m snakefmt --check Snakefile workflow/rules
echo "== snakemake --lint"
snakemake --lint
echo "== snakemake dry-runs"
for cfg in config.yaml configs/ci.yaml configs/europarl.yaml; do
  snakemake -n --quiet --nolock --configfile "$cfg" > /dev/null
  echo "dry-run ok: $cfg"
done
# The configs that name a Hugging Face folder, over tiny models built offline in a scratch study.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
$PYTHON -m caspes.hf.tiny "$scratch/tiny_models" > /dev/null 2>&1
mkdir -p "$scratch/models" && ln -s "$scratch/tiny_models/whisper" "$scratch/models/whisper-small"
snakemake -n --quiet --nolock -s Snakefile -d "$scratch" --configfile "$PWD/configs/ci.yaml" "$PWD/configs/ci_hf.yaml" > /dev/null
echo "dry-run ok: configs/ci.yaml + configs/ci_hf.yaml"
snakemake -n --quiet --nolock -s Snakefile -d "$scratch" --configfile "$PWD/configs/whisper.yaml" > /dev/null
echo "dry-run ok: configs/whisper.yaml"
# The prepared GPU check, its steps run on the CPU at a tiny size (about a minute), so it keeps working
# for the task that has a device.
GPU_CHECK_SMOKE=1 bash tools/gpu_check.sh "$scratch/gpu_check" > "$scratch/gpu_check.log" 2>&1 \
  || { cat "$scratch/gpu_check.log" "$scratch"/gpu_check/*.log >&2; exit 1; }
echo "gpu_check smoke ok: tools/gpu_check.sh"

# The configs/ci.yaml study through a real single-node SLURM (about 32 minutes; needs root for
# apt-get and the daemons). SLURM=0 skips it.
if [ "${SLURM:-1}" = "0" ]; then
  echo "== SLURM check skipped (SLURM=0)"
elif [ "$(id -u)" != "0" ]; then
  echo "== SLURM check skipped: it needs root (run: sudo bash tests/slurm/run_slurm_ci.sh)"
else
  echo "== SLURM check (tests/slurm/run_slurm_ci.sh)"
  bash tests/slurm/run_slurm_ci.sh
fi
