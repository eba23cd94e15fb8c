"""The released size on this machine's CPU, in bf16: decode tok/s and TTFT of our dynamic and
static paths against transformers' `generate` on the same prompt (256 tokens), the bound this
machine's memory bandwidth puts on decoding (measured here: every decode step reads all decoder
weights), and a profile of where a static step's time goes beside a dynamic one.

    python bench/cpu_full_size.py                       # about 12 GiB of memory, minutes
    python bench/cpu_full_size.py --layers 2 --tokens 2 --prompt-tokens 32   # smoke
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from bench.engine import full_size_engine, measure, print_table, prompt_of_tokens  # noqa: E402
from engine.request import GenerationRequest, SamplingParams  # noqa: E402
from media.parts import (
    Message,  # noqa: E402
    TextPart,  # noqa: E402
)


def memory_bandwidth(gib: float = 2.0, repeats: int = 5) -> float:
    """Bytes/s reading a tensor far larger than every cache: the best of `repeats` fp32 sums (a
    bf16 sum measured 1.9 GB/s here: it is bound by converting to fp32, not by memory)."""
    x = torch.ones(int(gib * 2**30 // 4), dtype=torch.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - started)
    return x.numel() * 4 / best


def top_ops(engine, request, mode: str, count: int = 8) -> list[tuple[str, float]]:
    """(op, ms per new token) of one request's profile on the `mode` path, largest first."""
    from torch.profiler import ProfilerActivity, profile

    engine.set_decode(mode)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        list(engine.stream(request))
    n = request.params.max_new_tokens
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:count]
    return [(e.key, e.self_cpu_time_total / 1e3 / n) for e in ops]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, help="fewer layers in every stack (a smoke run)")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per measured answer")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=256, help="the prompt's length (a smoke run: fewer)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    device = torch.device("cpu")
    bandwidth = memory_bandwidth()
    with tempfile.TemporaryDirectory() as tmp:
        from tooling.tiny_checkpoint import write_tiny_checkpoint

        engine = full_size_engine(write_tiny_checkpoint(Path(tmp) / "tiny"), device, args.layers, torch.bfloat16)
        weights = sum(
            p.numel() * p.element_size()
            for k, p in engine.model.named_parameters()
            if "embed_tokens_extend" not in k and "lora_" not in k
        )
        text = [TextPart(prompt_of_tokens(engine, args.prompt_tokens))]
        print(
            f"# bench/cpu_full_size.py  {time.strftime('%Y-%m-%d')}  CPU, {torch.get_num_threads()} threads  "
            f"torch {torch.__version__}  {engine.model.config.num_hidden_layers} layers, bf16"
        )
        print(
            f"# memory bandwidth (fp32 sum over 2 GiB): {bandwidth / 1e9:.1f} GB/s; decoder weights "
            f"{weights / 1e9:.2f} GB -> at most {bandwidth / weights:.2f} tok/s"
        )
        print_table(*measure(engine, {"text": text}, args.tokens, args.repeats, ["dynamic", "static"]))
        request = GenerationRequest([Message("user", text)], SamplingParams(max_new_tokens=args.tokens))
        for mode in ("dynamic", "static"):
            print(f"# {mode}: the largest ops, ms per new token (prefill included)")
            for op, ms in top_ops(engine, request, mode):
                print(f"#   {op:<40} {ms:9.1f}")


if __name__ == "__main__":
    main()
