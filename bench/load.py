"""Load benchmark: N concurrent streaming clients on loopback for a bounded time, against a real
`phi4mm serve` (started here on the tiny checkpoint, or --url for one already running).

Prints completed / 429 / failed counts, p50/p95 time to first token (the first event after the
role chunk, as the client sees it) and the server's resident memory at start and end (from its /metrics).
Goal: no failures other than explicit 429s, and flat memory.

    python bench/load.py [--clients 64] [--seconds 60] [--warmup 30] [--max-tokens 64] [--url URL --api-key KEY]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tooling.server import running_server  # noqa: E402

EXAMPLES = ROOT / "ui" / "examples"
IMAGE = {
    "type": "image_url",
    "image_url": {"url": "data:image/png;base64," + base64.b64encode((EXAMPLES / "sunset.png").read_bytes()).decode()},
}
AUDIO = {
    "type": "input_audio",
    "input_audio": {"data": base64.b64encode((EXAMPLES / "question.wav").read_bytes()).decode(), "format": "wav"},
}
# one of each adapter's requests, in turn
CONTENTS = ["Write a short poem about the sea.", [IMAGE, {"type": "text", "text": "Describe this photo."}], [AUDIO]]


def resident_mb(url: str, api_key: str | None = None) -> float:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}  # /metrics is behind the key
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("process_resident_memory_bytes"))
    return float(line.split()[1]) / 2**20


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.ttfts: list[float] = []
        self.errors: Counter[str] = Counter()

    def add(self, outcome: str, ttft: float | None = None, error: str | None = None) -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if ttft is not None:
                self.ttfts.append(ttft)
            if error:
                self.errors[error[:120]] += 1


def client_loop(index: int, url: str, key: str, max_tokens: int, deadline: float, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    turn = index
    with httpx.Client(timeout=httpx.Timeout(10, read=max(10, deadline - time.time() + 30))) as http:
        while time.time() < deadline:
            body = {
                "messages": [{"role": "user", "content": CONTENTS[turn % len(CONTENTS)]}],
                "max_tokens": max_tokens,
                "stream": True,
            }
            turn += 1
            started, ttft = time.perf_counter(), None
            try:
                with http.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response:
                    if response.status_code == 429:
                        tally.add("429")
                        time.sleep(min(float(response.headers.get("retry-after", 1)), max(0, deadline - time.time())))
                        continue
                    if response.status_code != 200:
                        tally.add("failed", error=f"HTTP {response.status_code}: {response.read()[:100]!r}")
                        continue
                    done = False
                    for line in response.iter_lines():
                        if line == "data: [DONE]":
                            done = True
                        elif line.startswith("data: "):
                            event = json.loads(line[6:])
                            if "error" in event:
                                raise RuntimeError(event["error"]["message"])
                            choice = (event.get("choices") or [{}])[0]
                            if ttft is None and (choice.get("delta", {}).get("content") or choice.get("finish_reason")):
                                ttft = time.perf_counter() - started  # first generated token's event
                    tally.add("completed" if done else "failed", ttft, None if done else "stream ended without [DONE]")
            except Exception as err:  # noqa: BLE001 - every failure is counted, none stops the run
                tally.add("failed", error=f"{type(err).__name__}: {err}")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else (values or [0])[0]


def burst(url: str, key: str, clients: int, seconds: float, max_tokens: int) -> tuple[Tally, float]:
    tally, deadline = Tally(), time.time() + seconds
    threads = [
        threading.Thread(target=client_loop, args=(i, url, key, max_tokens, deadline, tally)) for i in range(clients)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - began


def run(url: str, key: str, clients: int, seconds: float, max_tokens: int, warmup: float) -> None:
    idle_mb = resident_mb(url, key)
    if warmup:  # the same load, unmeasured: first-use allocations (kernels, thread stacks, caches)
        burst(url, key, clients, warmup, max_tokens)
    start_mb = resident_mb(url, key)
    tally, elapsed = burst(url, key, clients, seconds, max_tokens)
    end_mb = resident_mb(url, key)
    o = tally.outcomes
    print(f"clients={clients} seconds={seconds:g} (ran {elapsed:.1f}) max_tokens={max_tokens}")
    print(
        f"completed={o['completed']} 429={o['429']} failed={o['failed']} ({o['completed'] / elapsed:.2f} completed/s)"
    )
    if tally.ttfts:
        print(
            f"ttft p50={percentile(tally.ttfts, 50) * 1000:.0f} ms p95={percentile(tally.ttfts, 95) * 1000:.0f} ms "
            f"(n={len(tally.ttfts)})"
        )
    print(
        f"server RSS idle={idle_mb:.0f} MB, after {warmup:g} s warm-up={start_mb:.0f} MB, end={end_mb:.0f} MB "
        f"(change over the run {end_mb - start_mb:+.0f} MB)"
    )
    for error, count in tally.errors.most_common(5):
        print(f"  failure x{count}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=30, help="seconds of unmeasured load first")
    parser.add_argument("--url", help="a running server (default: start one on the tiny checkpoint)")
    parser.add_argument("--api-key", default="bench-key")
    parser.add_argument("--queue-size", default="16", help="for the server started here")
    args = parser.parse_args()
    if args.url:
        run(args.url.rstrip("/"), args.api_key, args.clients, args.seconds, args.max_tokens, args.warmup)
        return
    from tooling.tiny_checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        with running_server(
            checkpoint, Path(tmp) / "serve.log", api_key=args.api_key, queue_size=args.queue_size
        ) as url:
            print(f"server: tiny checkpoint on CPU at {url}, queue_size={args.queue_size}")
            run(url, args.api_key, args.clients, args.seconds, args.max_tokens, args.warmup)


if __name__ == "__main__":
    main()
