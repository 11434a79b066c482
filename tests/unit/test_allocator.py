"""Unit tests for caspes.core.allocator (glibc: keep freed memory in SPES jobs)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import caspes.core.allocator as allocator
from caspes.core.allocator import retain_freed_memory


def test_disabled_touches_nothing(monkeypatch):
    def boom():
        raise AssertionError("the C library must not be looked up when disabled")

    monkeypatch.setattr(allocator, "_glibc", boom)
    assert "retain_freed_memory is false" in retain_freed_memory(False)


def test_elsewhere_than_glibc_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert retain_freed_memory() == "allocator: not glibc, left as it is"


def test_refused_setting_raises(monkeypatch):
    class Refusing:
        def mallopt(self, param, value):
            return 0

    monkeypatch.setattr(allocator, "_glibc", lambda: Refusing())
    with pytest.raises(RuntimeError, match="M_TRIM_THRESHOLD"):
        retain_freed_memory()


# In a child process (the setting lasts for the process): resident memory after a 64 MiB tensor
# is freed. glibc maps such a block with mmap and unmaps it on free, unless retained.
_CHILD = textwrap.dedent(
    """
    import os, sys, torch
    from caspes.core.allocator import retain_freed_memory
    if sys.argv[1] == "retain":
        print(retain_freed_memory(), file=sys.stderr)
    page = os.sysconf("SC_PAGE_SIZE")
    def rss():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page
    before = rss()
    x = torch.empty(16 * 2**20, dtype=torch.float32).fill_(1.0)  # 64 MiB, touched
    del x
    print((rss() - before) / 2**20)
    """
)


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_freed_memory_stays_only_when_retained():
    kept = {}
    for mode in ("default", "retain"):
        out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
        kept[mode] = float(out.stdout.strip().splitlines()[-1])
        if mode == "retain":
            assert "freed memory kept" in out.stderr
    assert kept["default"] < 16, kept  # unmapped on free
    assert kept["retain"] > 48, kept  # still resident, ready for the next batch
