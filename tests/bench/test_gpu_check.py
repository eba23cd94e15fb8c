"""bench/gpu_check.py keeps running and writes the JSON it promises, every figure; its figures are not
asserted (they belong to a GPU run). A CPU smoke at the released widths: 1 layer per stack, 3 new
tokens, 2 streams, and small inputs (a 16-token prompt, one crop per image, 2 s of speech, one
clip transcribed to 2 tokens): on a CPU the prefills are most of the time (about 70 s alone)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the full-size model at 1 layer on a CPU

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check.py"),
            *("--layers", "1", "--tokens", "3", "--clips", "1", "--streams", "2", "--asr-tokens", "2"),
            *("--prompt-tokens", "16", "--max-crops", "1", "--speech-seconds", "2", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    report = json.loads(out.read_text())
    assert report["device"].startswith("CPU") and report["layers"] == 1
    assert len(rows) == len(report["figures"]) >= 14
    assert all(set(f) == {"value", "baseline", "unit", "note"} for f in report["figures"].values())
    failed = [name for name, f in report["figures"].items() if f["note"].startswith("failed")]
    assert failed == []
    assert report["figures"]["start-up of the static path: compiling + self-check"]["note"].endswith("passed")
    assert all(
        report["figures"][f"greedy agreement, {a}: static vs generate"]["value"] == 1.0
        for a in ("base", "vision", "speech")
    )
