"""bench/cpu_full_size.py keeps running (1 layer per stack, a 32-token prompt, 2 new tokens): the
bandwidth bound, the table against `generate` on both paths, and each path's profile. Figures are
not asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the full-size model at 1 layer on a CPU

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_full_size_smoke_prints_the_bound_the_table_and_the_profiles():
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "cpu_full_size.py"),
            "--layers",
            "1",
            "--tokens",
            "2",
            "--prompt-tokens",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("# memory bandwidth") and "tok/s" in line for line in lines)
    assert {line.split()[1] for line in lines if line.startswith("text ")} == {"reference", "dynamic", "static"}
    for mode in ("dynamic", "static"):
        profile = lines[lines.index(f"# {mode}: the largest ops, ms per new token (prefill included)") + 1 :][:8]
        assert any("aten::mm" in line for line in profile)
