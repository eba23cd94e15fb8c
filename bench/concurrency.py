"""Concurrency benchmark: aggregate tokens/s for 1, 4 and 16 concurrent mixed-modality streams
(text, image, audio, image+audio in turn: four streams are four adapters' worth of rows), with
continuous batching and without it (one request at a time), in the same process. Each level runs
both ways `--repeats` times, alternating; it prints the medians, the median of the paired ratios
batched / one at a time, and the scheduler's host overhead per batched step (µs outside the forward
pass: building inputs, sampling, handing tokens over; on a GPU the read-back also waits there).

    python bench/concurrency.py [--streams 1 4 16] [--max-new-tokens 64] [--repeats 3]
                                [--decode MODE] [--full-size [--layers N]]
    python bench/concurrency.py --server ...   # the same through a real server (bench/server_streams.py)

With a static or compiled decode path, a request running alone (every one-at-a-time request,
and a batch of one) takes the fast path.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transformers  # noqa: E402

from bench.engine import open_bench_engine  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.request import GenerationRequest, SamplingParams  # noqa: E402
from media.parts import Message  # noqa: E402
from tooling.inputs import MODALITIES  # noqa: E402


def aggregate_tokens_per_s(engine: Engine, streams: int, max_new_tokens: int) -> float:
    """Every stream asks once, all at the same moment; tokens generated / wall seconds."""
    kinds = list(MODALITIES)
    requests = [
        GenerationRequest(
            [Message("user", MODALITIES[kinds[i % len(kinds)]]())], SamplingParams(max_new_tokens=max_new_tokens)
        )
        for i in range(streams)
    ]
    counts = [0] * streams
    start = threading.Barrier(streams + 1)

    def run(i):
        start.wait()
        counts[i] = sum(len(chunk.token_ids) for chunk in engine.stream(requests[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="the released architecture, random weights (GPU)")
    parser.add_argument("--layers", type=int)
    parser.add_argument("--decode", default="auto", help="auto | compiled | static | dynamic")
    parser.add_argument("--server", action="store_true", help="through a real `phi4mm serve` (HTTP and media)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    if args.server:
        from bench.server_streams import run

        run(args.streams, args.max_new_tokens, args.repeats, args.decode)
        return
    with tempfile.TemporaryDirectory() as tmp:
        engine, described, _ = open_bench_engine(Path(tmp), args.full_size, args.layers, args.decode)
        print(
            f"# bench/concurrency.py  {time.strftime('%Y-%m-%d')}  device: {described}, "
            f"{args.max_new_tokens} new tokens, median of {args.repeats}"
        )
        aggregate_tokens_per_s(engine, len(MODALITIES), 4)  # warm-up (and compiling): every modality once
        print(
            f"{'streams':>7} {'one_at_a_time_tps':>18} {'batched_tps':>12} {'ratio':>6} "
            f"{'vs_1_stream':>11} {'host_us_per_step':>16} {'mean_batch':>10}"
        )
        single = None
        for streams in args.streams:
            serial, batched, ratios, host, steps, rows = [], [], [], 0.0, 0, 0
            for _ in range(args.repeats):
                engine.enable_batching(1)
                serial.append(aggregate_tokens_per_s(engine, streams, args.max_new_tokens))
                engine.enable_batching(max(streams, 2))
                batched.append(aggregate_tokens_per_s(engine, streams, args.max_new_tokens))
                scheduler = engine.scheduler
                scheduler.close()
                host, steps, rows = (
                    host + scheduler.host_seconds,
                    steps + scheduler.steps,
                    rows + scheduler.rows_stepped,
                )
                ratios.append(batched[-1] / serial[-1])
            single = single or statistics.median(batched)
            per_step = f"{host / steps * 1e6:.0f}" if steps else "-"  # a lone row on the static path has none
            mean_batch = f"{rows / steps:.1f}" if steps else "-"
            print(
                f"{streams:>7} {statistics.median(serial):>18.1f} {statistics.median(batched):>12.1f} "
                f"{statistics.median(ratios):>6.2f} {statistics.median(batched) / single:>11.2f} "
                f"{per_step:>16} {mean_batch:>10}"
            )


if __name__ == "__main__":
    main()
