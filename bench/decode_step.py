"""The dynamic path's decode step against the length of what is cached: PaddedRows (the path of
CPUs and quantized models) with a cache whose layers grow in place (engine/roomy_cache.py, the
engine's) against transformers' DynamicCache, which copies the whole cache at every step
(`torch.cat`), alternating in one process on the same model, rows and cached keys and values
(random: only their size matters here). Prints the median step of each and their ratio.

    python bench/decode_step.py                       # the released shapes, 8 of 32 layers, bf16
    python bench/decode_step.py --layers 32 --cached 500 3000 --rows 1 4
    python bench/decode_step.py --tiny                # the tiny checkpoint, fp32
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
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import DynamicCache  # noqa: E402

from bench.engine import full_size_engine  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.loading import LoadOptions  # noqa: E402
from engine.roomy_cache import roomy_cache  # noqa: E402
from engine.row_caches import PaddedRows  # noqa: E402
from tooling.tiny_checkpoint import write_tiny_checkpoint  # noqa: E402


def step_ms(engine: Engine, rows: int, cached: int, roomy: bool, steps: int) -> float:
    """Median ms of a decode step for `rows` rows with `cached` tokens each."""
    config, dtype = engine.model.config, engine.dtype
    shape = (1, config.num_key_value_heads, cached, config.hidden_size // config.num_attention_heads)
    padded = PaddedRows(engine.runner)
    if not roomy:  # every cache the batch makes, transformers' own
        padded._dynamic = lambda layers: DynamicCache(ddp_cache_data=layers, config=config)
    members, ids = [], torch.zeros(1, cached, dtype=torch.long)
    for _ in range(rows):
        row = SimpleNamespace(prepared=SimpleNamespace(adapter="base", input_ids=ids))
        keys, values = torch.randn(shape, dtype=dtype) * 0.1, torch.randn(shape, dtype=dtype) * 0.1
        layers = [(keys, values)] * config.num_hidden_layers
        cache = roomy_cache(config, layers) if roomy else DynamicCache(ddp_cache_data=layers, config=config)
        padded.adopt(row, cache)
        members.append(row)
    tokens = torch.full((rows,), 100, dtype=torch.long)
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        padded.step(members, tokens)
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="the tiny checkpoint instead of the released shapes")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers at the released shapes (of 32)")
    parser.add_argument("--cached", type=int, nargs="+", default=[500, 1500, 3000])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = write_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        if args.tiny:
            engine, described = Engine.load(LoadOptions(model=str(tiny), device="cpu")), "tiny checkpoint, fp32"
        else:
            engine = full_size_engine(tiny, torch.device("cpu"), args.layers, torch.bfloat16)
            described = f"released shapes, {args.layers} of 32 layers, bf16"
        threads = torch.get_num_threads()
        print(f"# bench/decode_step.py  {time.strftime('%Y-%m-%d')}  CPU ({threads} threads), {described}")
        print(f"{'rows':>4} {'cached':>7} {'dynamic_cache_ms':>17} {'roomy_ms':>9} {'ratio':>6}")

        def run() -> None:  # in a thread, as the server's decode loop runs
            for rows in args.rows:
                for cached in args.cached:
                    plain, roomy = [], []
                    for _ in range(args.repeats):
                        plain.append(step_ms(engine, rows, cached, False, args.steps))
                        roomy.append(step_ms(engine, rows, cached, True, args.steps))
                    a, b = statistics.median(plain), statistics.median(roomy)
                    print(f"{rows:>4} {cached:>7} {a:>17.1f} {b:>9.1f} {a / b:>6.2f}", flush=True)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()


if __name__ == "__main__":
    main()
