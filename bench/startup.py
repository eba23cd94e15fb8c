"""Start-up cost of the compiled decode path at full size: seconds to compile the decode step for
each adapter (prefill eager), the self-check, and decode tok/s of the compiled step vs the dynamic
path on the same 256-token prompt. Prints each figure as soon as it is measured, so a run cut off by
a time limit still shows how far it got.

    python bench/startup.py                 # a GPU: the released size, random bf16 weights
    python bench/startup.py --layers 2      # CPU smoke
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

from bench.engine import full_size_engine, prompt_of_tokens, run_ours  # noqa: E402
from engine.request import GenerationRequest, SamplingParams  # noqa: E402
from engine.router import BASE  # noqa: E402
from engine.self_check import check_fast_path  # noqa: E402
from engine.static_decode import StaticDecoder  # noqa: E402
from media.parts import (
    Message,  # noqa: E402
    TextPart,  # noqa: E402
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, help="fewer layers in every stack (a CPU smoke run)")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    clock = lambda: f"[{time.perf_counter() - started:6.1f} s]"  # noqa: E731
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        from tooling.tiny_checkpoint import write_tiny_checkpoint

        engine = full_size_engine(write_tiny_checkpoint(Path(tmp) / "tiny"), device, args.layers)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"{clock()} {name}, {engine.model.config.num_hidden_layers} layers, {engine.dtype}", flush=True)
        text = GenerationRequest(
            [Message("user", [TextPart(prompt_of_tokens(engine, 256))])], SamplingParams(max_new_tokens=args.tokens)
        )
        engine.set_decode("dynamic")
        run_ours(engine, text)
        print(f"{clock()} dynamic: {run_ours(engine, text)[1]:.1f} tok/s", flush=True)
        decoder = StaticDecoder(engine, 4096, compiled=True, compile_prefill=False)
        for adapter in [BASE, *engine.adapters]:
            began = time.perf_counter()
            decoder.warm_up([adapter])
            print(
                f"{clock()} compiled decode step, {adapter}: {time.perf_counter() - began:.1f} s to compile"
                f"{' (failed: ' + ', '.join(decoder.uncompiled) + ')' if decoder.uncompiled else ''}",
                flush=True,
            )
            if adapter == BASE:
                engine.static, engine.decode_mode = decoder, "compiled"
                run_ours(engine, text)
                print(f"{clock()} compiled (eager prefill): {run_ours(engine, text)[1]:.1f} tok/s", flush=True)
        began = time.perf_counter()
        problem = check_fast_path(engine)
        print(f"{clock()} self-check: {time.perf_counter() - began:.1f} s, {problem or 'passed'}", flush=True)


if __name__ == "__main__":
    main()
