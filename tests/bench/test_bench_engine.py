"""bench/engine.py keeps running: it prints our figures and transformers' side by side with
ratios for every modality (no speed is asserted here; figures belong in the benchmark)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_engine_benchmark_prints_ratios_per_modality():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "engine.py"), "--repeats", "1", "--max-new-tokens", "4"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    rows = {line.split()[0]: line.split()[1:] for line in run.stdout.splitlines() if line and not line.startswith(("#", "modality"))}
    assert set(rows) == {"text", "image", "audio", "image+audio"}
    for values in rows.values():
        assert len(values) == 6 and all(re.fullmatch(r"\d+\.\d+", v) and float(v) > 0 for v in values)
