"""Prefix cache benchmark: time to first token of a conversation's second turn in each modality
(a question about a photo, a clip or both, then a follow-up that sends the media again, as
OpenAI-style clients do), with the server's own system prompt (the service's safety prompt, as
`phi4mm serve` sends it), and of a text conversation's third turn, with what the turn before left
kept (engine/prefix_cache.py: that turn's whole prompt) against computed again, alternating in
the same process. Prints each row's prompt and kept tokens, both medians and their ratio.

    python bench/prefix_cache.py [--repeats 5]                    # CPU, tiny checkpoint
    python bench/prefix_cache.py --full-size [--layers N]         # the released shapes (GPU, or CPU)
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

from app.service import open_service  # noqa: E402
from bench.engine import open_bench_engine  # noqa: E402
from core.settings import Settings  # noqa: E402
from engine.request import SamplingParams  # noqa: E402
from media.parts import Message, TextPart  # noqa: E402
from tooling.inputs import MODALITIES  # noqa: E402

CONVERSATION = [
    ("user", "Plan a three-day trip to Lisbon for two people who like food and old buildings."),
    ("assistant", "Day one: the Alfama and the castle, lunch at a tasca, fado in the evening. " * 6),
    ("user", "Which day suits a rainy forecast best, and why?"),
    ("assistant", "Day two: the tile museum, the Gulbenkian and the Time Out market are indoors. " * 6),
    ("user", "Make day two cheaper."),
]


def messages(kind: str) -> list[Message]:
    """The turn measured: a text conversation's third, or a second one about the same media."""
    if kind == "conversation":
        return [Message(role, [TextPart(text)]) for role, text in CONVERSATION]
    return [
        Message("user", MODALITIES[kind]()),
        Message("assistant", [TextPart("It shows a warm afternoon; the sound is a steady tone.")]),
        Message("user", [TextPart("What would you change about it?")]),
    ]


def earlier(kind: str) -> list[Message]:
    """The turn before: what the user sent then."""
    return messages(kind)[: 3 if kind == "conversation" else 1]


def first_token_s(service, parts: list[Message]) -> tuple[float, int, int]:
    """One request's seconds to its first token (prepare and prefill; one token asked), its
    prompt tokens and the tokens it found kept. In a thread, as the server's decode loop runs."""
    out = {}

    def run():
        request, _, _ = service.build_request(parts, SamplingParams(max_new_tokens=1))
        began = time.perf_counter()
        final = list(service.engine.stream(request))[-1]
        out["result"] = time.perf_counter() - began, final.metrics.prompt_tokens, final.metrics.cached_tokens

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--full-size", action="store_true", help="the released architecture, random weights")
    parser.add_argument("--layers", type=int)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        engine, described, _ = open_bench_engine(Path(tmp), args.full_size, args.layers, "dynamic")
        service = open_service(Settings.from_env(model=str(Path(tmp) / "tiny")), engine=engine)
        print(f"# bench/prefix_cache.py  {time.strftime('%Y-%m-%d')}  device: {described}, median of {args.repeats}")
        print(f"{'request':>12} {'prompt':>7} {'kept':>7} {'computed_ms':>12} {'kept_ms':>8} {'ratio':>6}")
        for kind in [*MODALITIES, "conversation"]:
            computed, kept, shared = [], [], 0
            first_token_s(service, messages(kind))  # warm-up
            for _ in range(args.repeats):
                engine.enable_batching(1, prefixes=0)
                seconds, prompt, _ = first_token_s(service, messages(kind))
                computed.append(seconds)
                engine.enable_batching(1)
                first_token_s(service, earlier(kind))  # leaves its beginnings kept
                seconds, _, shared = first_token_s(service, messages(kind))
                kept.append(seconds)
            a, b = statistics.median(computed) * 1e3, statistics.median(kept) * 1e3
            print(f"{kind:>12} {prompt:>7} {shared:>7} {a:>12.1f} {b:>8.1f} {a / b:>6.2f}")


if __name__ == "__main__":
    main()
