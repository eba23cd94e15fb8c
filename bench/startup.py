"""Start-up of `phi4mm serve` (a subprocess, the console script, until /health answers) with the
compiled decode path, cold (an empty compile cache) and warm (the cache the cold start left),
against `--decode dynamic` in the same run. What compiling and the self-check add is each compiled
start minus the dynamic one.

    python bench/startup.py                       # the tiny checkpoint (CPU)
    python bench/startup.py --model DIR --rows 16

Goal (CPU, issue 27): on a warm start, what compiling + self-check add is <= 25 % of what they add
on a cold start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tooling.server import PHI4MM, free_port  # noqa: E402

GOAL = 0.25


def start_up(model: str, decode: str, folder: Path, log: Path, rows: int | None, timeout: float) -> float:
    """Seconds from launching `phi4mm serve` to its first /health answer; the server is then stopped."""
    port = free_port()
    settings = {"MODEL": model, "PORT": str(port), "DECODE": decode, "COMPILE_CACHE": str(folder / "compile")}
    if rows:
        settings["STATIC_CACHE_ROWS"] = str(rows)
    # torch's own default caches (inductor's under /tmp) must not make a cold start warm
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TORCHINDUCTOR_CACHE_DIR": str(folder / "torch-default")}
    env.update({f"PHI4MM_{k}": v for k, v in settings.items()})
    began = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([PHI4MM, "serve"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                return time.perf_counter() - began
            except OSError:
                if proc.poll() is not None or time.perf_counter() - began > timeout:
                    raise SystemExit(f"serve --decode {decode} did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def measure(model: str, rows: int | None, timeout: float, show=print) -> dict:
    """{'dynamic', 'cold', 'warm'} seconds to ready, and `ratio`: warm's extra over cold's."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if model is None:
            from tooling.tiny_checkpoint import write_tiny_checkpoint

            model = str(write_tiny_checkpoint(folder / "tiny"))
        times = {"dynamic": start_up(model, "dynamic", folder, folder / "dynamic.log", rows, timeout)}
        show(f"serve --decode dynamic: ready in {times['dynamic']:.1f} s")
        for start in ("cold", "warm"):
            log = folder / f"{start}.log"
            times[start] = start_up(model, "compiled", folder, log, rows, timeout)
            lines = [line for line in log.read_text().splitlines() if "decode step" in line or "ready in" in line]
            show(f"serve --decode compiled, {start}: ready in {times[start]:.1f} s")
            for line in lines:
                show(f"    {line}")
    cold, warm = times["cold"] - times["dynamic"], times["warm"] - times["dynamic"]
    times["ratio"] = warm / cold if cold > 0 else None
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a checkpoint folder; default: a tiny one written here")
    parser.add_argument("--rows", type=int, help="rows of the slot cache (PHI4MM_STATIC_CACHE_ROWS)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds one start may take")
    args = parser.parse_args()
    times = measure(args.model, args.rows, args.timeout)
    cold, warm = times["cold"] - times["dynamic"], times["warm"] - times["dynamic"]
    verdict = "met" if times["ratio"] is not None and times["ratio"] <= GOAL else "NOT met"
    print(
        f"compiling + self-check add {cold:.1f} s cold, {warm:.1f} s warm: warm is {times['ratio']:.0%} of cold "
        f"(goal <= {GOAL:.0%}: {verdict})"
    )


if __name__ == "__main__":
    main()
