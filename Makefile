# Two commands do everything on a fresh machine:
#   make run    set up, then regenerate the embedded default study (config.yaml)
#   make test   set up, then run the tests, linters and workflow dry-runs
PYTHON ?= python3
CORES ?= 2
# jemalloc (Debian libjemalloc2) removes most of the kernel time of CPU training; empty if absent.
# Its default page decay hands freed pages back to the kernel within seconds, so the large short-lived
# mask batches of SPES are page-faulted in again on every forward: SM^X ran 0.69x as fast as with glibc.
# Without decay (freed pages stay in the process, peak RSS unchanged) SM^X runs 1.7x and training 1.16x
# as fast as with jemalloc's defaults (README, "Performance").
JEMALLOC := $(firstword $(wildcard /usr/lib/*/libjemalloc.so.2))
ALLOC := LD_PRELOAD=$(JEMALLOC) MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1

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
