#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian/Ubuntu machine: the Debian packages the workflow calls
# (espeak-ng for the embedded corpus, ffmpeg for EuroParl-ST's m4a, jemalloc for faster CPU
# training) and this package with its pinned Python dependencies. Safe to run again: it skips
# what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

DEB_PACKAGES=(espeak-ng libespeak-ng1 ffmpeg libjemalloc2)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install: Debian packages missing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install: Debian packages present (${DEB_PACKAGES[*]})"
fi

# The package in editable mode with its pinned dependencies (torch 2.11.0 runs on CPU and GPU).
if $PYTHON -c "import caspes, torch, snakemake, pytest, snakefmt, importlinter" 2>/dev/null \
   && $PYTHON - <<'PY' 2>/dev/null
import importlib.metadata as md, pathlib, re, sys, tomllib
meta = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]
extras = meta["optional-dependencies"]
pins = meta["dependencies"] + extras["workflow"] + extras["dev"]
for pin in pins:
    name, version = re.split(r"==", pin)
    if md.version(name) != version:
        sys.exit(1)
loc = pathlib.Path(__import__("caspes").__file__).resolve()
sys.exit(0 if loc.is_relative_to(pathlib.Path("src").resolve()) else 1)
PY
then
  echo "install: Python packages present (pins of pyproject.toml satisfied)"
else
  $PYTHON -m pip install --quiet --disable-pip-version-check -e ".[workflow,dev]"
  echo "install: Python packages installed"
fi
