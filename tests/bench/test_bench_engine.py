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


def test_load_benchmark_reports_counts_ttft_and_memory(web_server):
    from tests.conftest import API_KEY

    run = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--url", web_server, "--api-key", API_KEY,
                          "--clients", "3", "--seconds", "3", "--warmup", "0", "--max-tokens", "4"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    counts = dict(re.findall(r"(completed|429|failed)=(\d+)", run.stdout))
    assert int(counts["completed"]) >= 3 and counts["failed"] == "0"
    assert re.search(r"ttft p50=\d+ ms p95=\d+ ms", run.stdout) and "server RSS idle=" in run.stdout
