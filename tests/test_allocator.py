"""``keep_freed_memory``: large activations are reused, not faulted in afresh every step (glibc only).

Each case runs in its own interpreter: malloc settings last for the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calcidet.train.allocator import glibc_version

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
THP_ALWAYS = THP.exists() and "[always]" in THP.read_text()

# Three 113 MB activations per "step", as in an EfficientNet block at batch 8 of 384 px crops.
STEPS = """
import json, resource, sys, torch
from calcidet.train.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
a = torch.rand(8, 96, 192, 192)
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b = a * 2; c = b + 1; d = c.clamp(0, 6); del b, c, d
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""


def _steps(mode: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(glibc_version() is None, reason="glibc's malloc only")
def test_later_steps_reuse_memory_instead_of_faulting_it_in() -> None:
    kept = _steps("keep")
    assert kept["kept"] is True
    pages = 3 * 8 * 96 * 192 * 192 * 4 // 4096  # what one step would fault in from scratch
    assert kept["faults"][0] > pages // 2  # the first step does fault its memory in
    # Later steps reuse the heap: over five steps less than one step's pages (the heap's layout
    # settles over a few steps, now and then growing it by one block).
    assert sum(kept["faults"][-5:]) < pages, kept
    if not THP_ALWAYS:  # with huge pages everywhere there are few faults to compare
        plain = _steps("plain")
        assert min(plain["faults"][-5:]) > pages // 2, plain  # glibc's default: every step again


def test_opt_out_keeps_the_system_allocator() -> None:
    assert _steps("keep", CALCIDET_MALLOC="system")["kept"] is False
