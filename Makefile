# Two commands do everything on a fresh machine:
#   make run    set up, then regenerate the embedded default study (config.yaml)
#   make test   set up, then run the tests, linters and workflow dry-runs
PYTHON ?= python3
CORES ?= 2
# jemalloc (Debian libjemalloc2) removes most of the kernel time of CPU training; empty if absent.
JEMALLOC := $(firstword $(wildcard /usr/lib/*/libjemalloc.so.2))

.PHONY: install run run-ci test test-slurm
install:
	PYTHON=$(PYTHON) bash tools/install.sh

run: install
	LD_PRELOAD=$(JEMALLOC) snakemake --cores $(CORES)
	snakemake --report report.html

run-ci: install
	LD_PRELOAD=$(JEMALLOC) snakemake --cores $(CORES) --configfile configs/ci.yaml

test: install
	PYTHON=$(PYTHON) bash tools/test.sh

# The configs/ci.yaml study through a real single-node SLURM started here (root; ~15 min).
test-slurm: install
	bash tests/slurm/run_slurm_ci.sh
