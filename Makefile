# Two commands do everything on a fresh machine:
#   make run    set up, then regenerate the embedded default study (config.yaml)
#   make test   set up, then run the tests, linters and workflow dry-runs
PYTHON ?= python3
CORES ?= 2
# Allocator: glibc's (no preload). jemalloc with page decay off (MALLOC_CONF=dirty_decay_ms:-1,
# muzzy_decay_ms:-1) made short benchmarks faster (training 0.357 vs 0.426 s/step), but in a full
# `make run` (2026-12-03) the large model's asr_st training job grew to 21 GB RSS within about 30 min
# and the machine swapped: decay off never returns freed pages, and the varying batch shapes of
# training do not reuse them. jemalloc's default decay is safe but makes SM^X 0.69x as fast as glibc
# (README, "Allocator"). ALLOC is a prefix for the snakemake command: `make run ALLOC="LD_PRELOAD=..."`.
ALLOC ?=

.PHONY: install run run-ci test test-slurm
install:
	PYTHON=$(PYTHON) bash tools/install.sh

run: install
	$(ALLOC) snakemake --cores $(CORES)
	snakemake --report report.html

run-ci: install
	$(ALLOC) snakemake --cores $(CORES) --configfile configs/ci.yaml

test: install
	PYTHON=$(PYTHON) bash tools/test.sh

# The configs/ci.yaml study through a real single-node SLURM started here (root; ~32 min).
test-slurm: install
	bash tests/slurm/run_slurm_ci.sh
