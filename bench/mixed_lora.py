"""Mixed-adapter forward passes: one decode step (one token per row, no cache) for a batch whose
rows want no adapter, vision and speech, through the router's batched LoRA update against PEFT's
own mixed-batch path (`adapter_names`: a sub-batch per adapter in every layer), in the same
process, with a single-adapter batch of the same size as the floor; medians of interleaved runs,
and the median of the paired ratios.

    python bench/mixed_lora.py [--rows 4 16] [--steps 100] [--repeats 7] [--full-size [--layers N]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from bench.engine import open_bench_engine  # noqa: E402


def ms_per_step(engine, ids: torch.Tensor, adapters: list[str], steps: int, peft_mixed: bool = False) -> float:
    """`steps` forward passes, in ms per pass."""
    model, hooks = engine.model, []
    if peft_mixed:  # PEFT's own path: its adapters on, `adapter_names` handed to every LoRA layer
        names = ["__base__" if a == "base" else a for a in adapters]
        hooks = [
            layer.register_forward_pre_hook(lambda m, a, k: (a, {**k, "adapter_names": names}), with_kwargs=True)
            for layer in engine.router.layers
        ]
        model.enable_adapters()  # once, as the old router did once per run of mixed steps
    try:
        began = time.perf_counter()
        for _ in range(steps):
            if peft_mixed:
                with engine.runner.slot, torch.inference_mode():
                    model(input_ids=ids)
            else:
                with engine.runner.turn(adapters):
                    model(input_ids=ids)
        if ids.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - began) / steps * 1000
    finally:
        for hook in hooks:
            hook.remove()
        engine.router.active = None  # PEFT's state was changed behind the router's back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--layers", type=int)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        engine, described, _ = open_bench_engine(Path(tmp), args.full_size, args.layers, "dynamic")
        print(f"# bench/mixed_lora.py  {time.strftime('%Y-%m-%d')}  device: {described}, {args.steps} steps")
        print(f"{'rows':>4} {'one_adapter_ms':>14} {'peft_mixed_ms':>13} {'batched_lora_ms':>15} {'peft/batched':>12}")
        for rows in args.rows:
            ids = torch.randint(0, 1000, (rows, 1), device=engine.device)
            mixed = [("base", "vision", "speech")[i % 3] for i in range(rows)]
            runs = {"one": [], "peft": [], "ours": []}
            for _ in range(args.repeats):  # interleaved, so the machine's drift hits all three alike
                runs["one"].append(ms_per_step(engine, ids, ["vision"] * rows, args.steps))
                runs["peft"].append(ms_per_step(engine, ids, mixed, args.steps, peft_mixed=True))
                runs["ours"].append(ms_per_step(engine, ids, mixed, args.steps))
            one, peft, ours = (statistics.median(runs[k]) for k in ("one", "peft", "ours"))
            ratio = statistics.median(p / o for p, o in zip(runs["peft"], runs["ours"]))
            print(f"{rows:>4} {one:>14.2f} {peft:>13.2f} {ours:>15.2f} {ratio:>12.2f}")


if __name__ == "__main__":
    main()
