"""The benchmarks keep running and print what they promise (no speed is asserted here; figures
belong in the benchmarks' output and bench/RESULTS.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # benchmarks run as subprocesses

ROOT = Path(__file__).resolve().parents[2]


def test_engine_benchmark_prints_ratios_per_modality_and_path(tiny_checkpoint, compile_folder):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "engine.py"),
            *("--model", str(tiny_checkpoint), "--compile-cache", str(compile_folder)),  # the session's
            *("--repeats", "1", "--max-new-tokens", "4"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line and not line.startswith(("#", "modality", "W1"))]
    paths = ("reference", "dynamic", "static", "compiled")
    assert [tuple(row[:2]) for row in rows] == [
        (m, p) for m in ("text", "image", "audio", "image+audio") for p in paths
    ]
    for row in rows:
        assert len(row) == 7 and all(re.fullmatch(r"\d+\.\d+", v) and float(v) > 0 for v in row[3:])


def test_asr_benchmark_reports_rtfx_one_at_a_time_and_batched():
    run = run_bench("asr.py", "--utterances", "3", "--max-batch", "3")
    figures = re.findall(r"^(one at a time|batched x3) +(\d+\.\d+) +(\d+) +(\d+\.\d+)$", run.stdout, re.M)
    assert [f[0] for f in figures] == ["one at a time", "batched x3"]
    assert figures[0][2] == figures[1][2] and int(figures[0][2]) > 0  # the same greedy work both ways
    assert re.search(r"batched / one at a time: \d+\.\d+", run.stdout)


def test_load_benchmark_reports_counts_ttft_and_memory(web_server):
    from tests.conftest import API_KEY

    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load.py"),
            "--url",
            web_server,
            "--api-key",
            API_KEY,
            "--clients",
            "3",
            "--seconds",
            "3",
            "--warmup",
            "0",
            "--max-tokens",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    counts = dict(re.findall(r"(completed|429|failed)=(\d+)", run.stdout))
    assert int(counts["completed"]) >= 3 and counts["failed"] == "0"
    assert re.search(r"ttft p50=\d+ ms p95=\d+ ms", run.stdout) and "server RSS idle=" in run.stdout


def test_prefix_cache_benchmark_finds_what_an_earlier_request_kept():
    run = run_bench("prefix_cache.py", "--repeats", "1")
    rows = [line.split() for line in run.stdout.splitlines() if line.strip() and not line.startswith("#")][1:]
    assert [row[0] for row in rows] == ["text", "image", "audio", "image+audio", "conversation"]
    for _, prompt, shared, *times in rows:
        assert 40 < int(shared) < int(prompt) and all(float(t) > 0 for t in times)


def test_decode_step_benchmark_times_both_caches_as_users_run_it():
    run = run_bench("decode_step.py", "--tiny", "--cached", "64", "--rows", "1", "2", "--steps", "3", "--repeats", "1")
    rows = [line.split() for line in run.stdout.splitlines() if line.strip() and not line.startswith("#")][1:]
    assert [(row[0], row[1]) for row in rows] == [("1", "64"), ("2", "64")]
    assert all(float(value) > 0 for row in rows for value in row[2:])


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess:
    """A benchmark run as its users run it (a subprocess from the repository root) -> its output."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    return run


def test_concurrency_through_a_server_prints_the_lone_ratio_and_each_stream_count():
    run = run_bench("concurrency.py", "--server", "--streams", "2", "--max-new-tokens", "4", "--repeats", "2")
    lone = r"^lone request \(each kind in turn\): server (\d+\.\d+) tok/s, direct (\d+\.\d+) tok/s, "
    assert re.search(lone + r"server/direct \d+\.\d+ \(rounds \d+\.\d+-\d+\.\d+\)$", run.stdout, re.M), run.stdout
    assert re.search(r"^ +2 +\d+\.\d+ +\d+\.\d+ +\d+\.\d+  \(rounds \d+\.\d+-\d+\.\d+\)$", run.stdout, re.M), run.stdout
