"""What other threads' CPU thread teams cost the decode loop (core/cpu_threads.py). A batch of
rows (adapters mixed: base, vision, speech in turn) steps on a decode thread of its own, as the
scheduler's does, while worker threads that did a request's kind of tensor work (an image's
resize and normalisation, a small product) are alive: none; ones that did it as they would by
default, each keeping the team of threads OpenMP gave it; ones that did it `alone()`, as request
preparation does now. The three alternate in one process; prints each one's median step and the
median of the paired ratios against no workers.

    python bench/cpu_threads.py [--rows 16] [--workers 8] [--rounds 8] [--cached 300]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from core.cpu_threads import alone, in_passing_thread  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.loading import LoadOptions  # noqa: E402
from engine.roomy_cache import roomy_cache  # noqa: E402
from engine.row_caches import PaddedRows  # noqa: E402
from tooling.tiny_checkpoint import write_tiny_checkpoint  # noqa: E402

KINDS = ("none", "default", "alone")  # what the worker threads are


class DecodeThread:
    """A batch of `rows` rows with `cached` random tokens each, stepped on a thread of its own."""

    def __init__(self, engine: Engine, rows: int, cached: int):
        self.orders: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        config = engine.model.config
        shape = (1, config.num_key_value_heads, cached, config.hidden_size // config.num_attention_heads)
        self.padded, self.members = PaddedRows(engine.runner), []
        self.tokens = torch.full((rows,), 100, dtype=torch.long)
        adapters = ["base", *engine.adapters]
        for i in range(rows):
            row = SimpleNamespace(prepared=SimpleNamespace(adapter=adapters[i % len(adapters)], input_ids=self.tokens))
            layers = [(torch.randn(shape) * 0.1, torch.randn(shape) * 0.1)] * config.num_hidden_layers
            self.padded.adopt(row, roomy_cache(config, layers))
            self.members.append(row)
        threading.Thread(target=self._serve, daemon=True).start()

    def median_ms(self, steps: int) -> float:
        self.orders.put(steps)
        return self.results.get()

    def _serve(self) -> None:
        while True:
            steps = self.orders.get()
            times = []
            for _ in range(steps):
                began = time.perf_counter()
                self.padded.step(self.members, self.tokens)
                times.append(time.perf_counter() - began)
            self.results.put(statistics.median(times) * 1e3)


def request_work() -> None:
    """Tensor work of the kind preparing a request does: a photo resized and normalised."""
    photo = torch.rand(1, 3, 896, 896)
    resized = torch.nn.functional.interpolate(photo, size=(448, 448), mode="bicubic", antialias=True)
    ((resized - 0.5) / 0.5).sum()
    torch.randn(64, 256) @ torch.randn(256, 64)


@contextmanager
def workers(count: int, kind: str):
    """`count` threads alive inside, each having done `request_work` (`kind`: default or alone)."""
    done, release = threading.Barrier(count + 1), threading.Event()

    def work() -> None:
        with alone() if kind == "alone" else nullcontext():
            request_work()
        done.wait()
        release.wait()  # alive, idle, as a server's worker threads are between requests

    baseline = _threads()
    threads = [threading.Thread(target=work, daemon=True) for _ in range(count if kind != "none" else 0)]
    for thread in threads:
        thread.start()
    if threads:
        done.wait()
    try:
        yield
    finally:
        release.set()
        for thread in threads:
            thread.join()
        _settle(baseline)


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _settle(baseline: int) -> None:
    """Waits (up to 2 s) until the process is back to `baseline` threads: a thread that ends takes
    its team with it, but those threads end a little later."""
    deadline = time.monotonic() + 2
    while _threads() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--cached", type=int, default=300)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        # made and loaded as the server loads it: on a thread that ends, so that its team goes with it
        engine = in_passing_thread(
            lambda: Engine.load(LoadOptions(model=str(write_tiny_checkpoint(Path(tmp) / "tiny", seed=0)), device="cpu"))
        )
    decode = in_passing_thread(lambda: DecodeThread(engine, args.rows, args.cached))
    decode.median_ms(args.steps)  # warm
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for round_ in range(args.rounds):
        for kind in KINDS[round_ % 3 :] + KINDS[: round_ % 3]:
            with workers(args.workers, kind):
                times[kind].append(decode.median_ms(args.steps))
    print(
        f"# bench/cpu_threads.py  {time.strftime('%Y-%m-%d')}  tiny checkpoint, CPU ({torch.get_num_threads()} "
        f"threads), {args.rows} rows, {args.workers} worker threads, {args.rounds} rounds"
    )
    for kind in KINDS:
        ratios = [mine / none for mine, none in zip(times[kind], times["none"])]
        print(
            f"workers {kind:8s} step {statistics.median(times[kind]):6.2f} ms   "
            f"against none {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
