"""Engine benchmark: time to first token and decode tokens/s of our engine, on each decode path
(dynamic, static, compiled), vs transformers' `generate` ("reference"), per modality, measured
in the same run on the same processor inputs and adapter.

    python bench/engine.py                       # CPU, tiny checkpoint (always available)
    python bench/engine.py --full-size           # GPU: full-size architecture, random bf16 weights
    python bench/engine.py --full-size --layers 2 --device cpu   # smoke-test the full-size path

Full-size mode: batch 1, a 256-token prompt, 256 new tokens, and achieved GB/s (decoder
weights + KV cache read per token) against the GPU's memory-bandwidth roofline, and on CUDA
the peak memory of one 8k-token chat.
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
from transformers.generation.streamers import BaseStreamer  # noqa: E402

from engine.engine import Engine  # noqa: E402
from engine.loading import LoadOptions  # noqa: E402
from engine.request import GenerationRequest, SamplingParams  # noqa: E402
from media.parts import (
    Message,  # noqa: E402
    TextPart,  # noqa: E402
)
from tooling.inputs import MODALITIES  # noqa: E402

# Peak HBM bandwidth, bytes/s, by device name fragment (vendor data sheets).
ROOFLINE = {"H100 80GB HBM3": 3.35e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}


class FirstTokenClock(BaseStreamer):
    """`generate` calls put() once with the prompt, then once per new token."""

    def __init__(self):
        self.calls = 0
        self.first_token_at = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.first_token_at = time.perf_counter()

    def end(self):
        pass


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(engine, request):
    """(TTFT s, decode tok/s, wall s) through our engine."""
    started = time.perf_counter()
    final = list(engine.stream(request))[-1]
    return final.metrics.ttft_s, final.metrics.tokens_per_s, time.perf_counter() - started


def reference_generate(engine, prepared, n: int, streamer=None):
    """transformers' own greedy `generate` of exactly `n` tokens on the engine's processor inputs,
    under the request's adapter: the baseline every engine figure is paired with."""
    with engine.runner.turn([prepared.adapter]):
        return engine.model.generate(
            **prepared.inputs,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            suppress_tokens=engine.media_token_ids,
            streamer=streamer,
        )


def run_reference(engine, request):
    """(TTFT s, decode tok/s, wall s) through transformers' `generate`."""
    started = time.perf_counter()
    prepared = engine.prepare(request)
    clock = FirstTokenClock()
    out = reference_generate(engine, prepared, request.params.max_new_tokens, clock)
    _sync(engine.device)
    ended = time.perf_counter()
    produced = out.shape[1] - prepared.prompt_tokens
    return clock.first_token_at - started, (produced - 1) / (ended - clock.first_token_at), ended - started


def measure(engine, inputs: dict[str, list], max_new_tokens, repeats, modes, compile_cache=None) -> tuple[dict, dict]:
    """({modality: {path: medians}}, {path: set-up seconds}) for transformers' `generate`
    ("reference") and our engine on each decode path, on the same inputs. Each path is chosen
    once (set-up: compiling every graph, if any) and then serves every modality; each of its
    timed runs is paired with a reference run just before it, so the ratios compare runs made
    under the same machine load. `first_s` is each modality's first, unmeasured call."""
    request = lambda parts: GenerationRequest([Message("user", parts)], SamplingParams(max_new_tokens=max_new_tokens))
    engine.runner.end_ids = set()  # every side produces exactly max_new_tokens
    results, setup = {modality: {"reference": {"runs": []}} for modality in inputs}, {}
    for path in modes:
        started = time.perf_counter()
        engine.set_decode(path, compile_cache=compile_cache)
        setup[path] = time.perf_counter() - started
        if engine.self_check_s:
            setup[f"{path} self-check"] = engine.self_check_s
        for modality, parts in inputs.items():
            rows = results[modality]
            rows["reference"].setdefault("first_s", run_reference(engine, request(parts))[2])
            first = run_ours(engine, request(parts))[2]
            pairs = [(run_reference(engine, request(parts)), run_ours(engine, request(parts))) for _ in range(repeats)]
            rows["reference"]["runs"] += [ref for ref, _ in pairs]
            rows[path] = {
                "first_s": first,
                "runs": [ours for _, ours in pairs],
                "ttft_ratio": statistics.median(ref[0] / ours[0] for ref, ours in pairs),
                "tps_ratio": statistics.median(ours[1] / ref[1] for ref, ours in pairs),
            }
    for rows in results.values():
        rows["reference"].update(ttft_ratio=1.0, tps_ratio=1.0)
        for row in rows.values():
            runs = row.pop("runs")
            row["ttft"], row["tps"] = (statistics.median(run[i] for run in runs) for i in (0, 1))
    return results, setup


def print_table(results: dict[str, dict[str, dict]], setup: dict[str, float]) -> None:
    print(
        "# set-up per path (compiling every graph, if any): "
        + ", ".join(f"{path} {seconds:.1f} s" for path, seconds in setup.items())
    )
    print("# ratios: medians over runs paired with a reference run made just before")
    print(f"{'modality':<12} {'path':<10} {'first s':>8} {'TTFT ms':>9} {'ref/this':>9} {'tok/s':>8} {'this/ref':>9}")
    for modality, rows in results.items():
        for path, r in rows.items():
            print(
                f"{modality:<12} {path:<10} {r['first_s']:>8.2f} {r['ttft'] * 1e3:>9.1f} "
                f"{r['ttft_ratio']:>9.2f} {r['tps']:>8.1f} {r['tps_ratio']:>9.2f}"
            )


def full_size_model(tiny_dir: Path, device: torch.device, layers: int | None, dtype: torch.dtype | None = None):
    """(model, processor): the released architecture with random weights (bf16 on a GPU, fp32 on
    a CPU) and no adapters, fed by the tiny checkpoint's processor (it carries the released token
    ids and vocabulary size)."""
    from transformers import AutoProcessor, GenerationConfig, Phi4MultimodalForCausalLM
    from transformers.initialization import no_init_weights

    from engine.model_config import RELEASED_GENERATION_CONFIG, full_size_config

    processor = AutoProcessor.from_pretrained(tiny_dir)
    config = full_size_config()
    if layers:  # a smoke run: every stack shallower (on a CPU the full-size encoders alone take minutes)
        config.num_hidden_layers = config.vision_config.num_hidden_layers = config.audio_config.num_blocks = layers
    dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
    config._attn_implementation = "sdpa"
    with torch.device(device):  # built in `dtype` from the start: fp32 first would not fit a 24 GiB machine
        # Built uninitialised, then initialised once: `_from_config` runs torch's own init in each
        # module, then transformers' from the inner model and again from the outer one, which took
        # 190 s of a 280 s CPU smoke run (2 layers). One `init_weights` writes every parameter
        # (checked on the tiny config: parameters set to NaN first all come out finite).
        with no_init_weights():
            model = Phi4MultimodalForCausalLM._from_config(config, dtype=dtype).eval()
        if device.type == "cpu" and dtype != torch.float32:
            vocabulary_in_fp32(model, config.initializer_range)
        model.init_weights()
    model.generation_config = GenerationConfig(**RELEASED_GENERATION_CONFIG)
    return model, processor


@torch.no_grad()
def vocabulary_in_fp32(model, std: float, rows: int = 8192) -> None:
    """The vocabulary matrix (embedding and head, tied: 0.6 G of the 0.95 G parameters at 2
    layers) drawn as `init_weights` draws it, normal(0, std) with the padding row zero, but in
    fp32 pieces: on a CPU `normal_` in bf16 took 11 s for it, in fp32 1.9 s, and `init_weights`
    draws it twice (as the embedding and as the head). Marked done, so `init_weights` leaves it."""
    embedding = model.get_input_embeddings()
    for weight in {w.data_ptr(): w for w in (embedding.weight, model.lm_head.weight)}.values():
        for piece in weight.split(rows):
            piece.copy_(torch.empty(piece.shape).normal_(0.0, std))
        weight._is_hf_initialized = True
    if embedding.padding_idx is not None:
        embedding.weight[embedding.padding_idx].zero_()


def full_size_engine(
    tiny_dir: Path, device: torch.device, layers: int | None, dtype: torch.dtype | None = None
) -> Engine:
    """The full-size model of `full_size_model` with random r=256/r=320 adapters."""
    from engine.model_config import decoder_lora_config
    from engine.model_family import adapter_specs

    model, processor = full_size_model(tiny_dir, device, layers, dtype)
    for spec in adapter_specs():
        model.add_adapter(decoder_lora_config(spec.released_rank), adapter_name=spec.name)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 1e-3)
    return Engine(model, processor, device)


def write_full_size_checkpoint(tiny_dir: Path, out: Path, device: torch.device, layers: int | None) -> Path:
    """`full_size_model` and random r=256/r=320 adapters written in the released on-disk layout,
    so that `Engine.load` (and its --quantize) reads it the way it reads the released model."""
    from engine.model_family import adapter_specs
    from tooling.tiny_checkpoint import write_adapter

    model, processor = full_size_model(tiny_dir, device, layers)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    generator = torch.Generator().manual_seed(0)
    for spec in adapter_specs():
        model = write_adapter(model, spec.folder, spec.released_rank, out, generator, scale=1e-2)
    return out


def open_bench_engine(folder: Path, full_size: bool, layers: int | None, decode: str) -> tuple[Engine, str, str]:
    """(engine, device description, decode mode) for the other benchmarks: the tiny checkpoint
    written into `folder`, or the full-size architecture fed by its processor."""
    from tooling.tiny_checkpoint import write_tiny_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    tiny = write_tiny_checkpoint(folder / "tiny")
    engine = (
        full_size_engine(tiny, device, layers)
        if full_size
        else Engine.load(LoadOptions(model=str(tiny), device=device.type))
    )
    mode = engine.set_decode(decode)
    return engine, f"{name}  {'full-size random weights' if full_size else 'tiny checkpoint'}, decode {mode}", mode


def prompt_of_tokens(engine: Engine, target: int) -> str:
    """Natural text whose rendered prompt (with the chat template's control tokens) is `target` tokens."""
    words = "the quick brown fox jumps over the lazy dog and describes the meeting " * (target // 4)
    ids = engine.tokenizer(words).input_ids
    size = lambda k: (
        engine.prepare(GenerationRequest([Message("user", [TextPart(engine.tokenizer.decode(ids[:k]))])])).prompt_tokens
    )
    k = target
    while size(k) > target:
        k -= 1
    return engine.tokenizer.decode(ids[:k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: a fresh tiny checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--layers", type=int, help="full-size mode: fewer layers in every stack (smoke test)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default="dynamic,static,compiled", help="our decode paths to measure")
    parser.add_argument("--compile-cache", help="folder of compiled decode steps (default ~/.cache/phi4mm/compile)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")

    with tempfile.TemporaryDirectory() as tmp:
        from tooling.tiny_checkpoint import write_tiny_checkpoint

        model_dir = Path(args.model) if args.model else write_tiny_checkpoint(Path(tmp) / "tiny")
        device = torch.device(
            "cuda"
            if args.device == "auto" and torch.cuda.is_available()
            else "cpu"
            if args.device == "auto"
            else args.device
        )
        name = (
            torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        )
        modes = args.modes.split(",")
        print(
            f"# bench/engine.py  {time.strftime('%Y-%m-%d')}  device: {name}  torch {torch.__version__}  "
            f"transformers {transformers.__version__}"
        )
        if not args.full_size:
            engine = Engine.load(LoadOptions(model=str(model_dir), device=device.type))
            n = args.max_new_tokens or 64
            print(f"# {model_dir.name}: batch 1, {n} new tokens, median of {args.repeats}")
            inputs = {m: MODALITIES[m]() for m in MODALITIES}
            print_table(*measure(engine, inputs, n, args.repeats, modes, args.compile_cache))
            return
        engine = full_size_engine(model_dir, device, args.layers)
        n = args.max_new_tokens or 256
        text_parts = [TextPart(prompt_of_tokens(engine, 256))]
        inputs = {"text": text_parts, **{m: MODALITIES[m]() for m in MODALITIES if m != "text"}}
        rows, setup = measure(engine, inputs, n, args.repeats, modes, args.compile_cache)
        engine_bytes = sum(
            p.numel() * p.element_size()
            for n_, p in engine.model.named_parameters()
            if "embed_tokens_extend" not in n_ and "lora_" not in n_
        )
        print(
            f"# full-size random weights, {engine.model.config.num_hidden_layers} layers, {engine.dtype}, "
            f"batch 1, {engine.prepare(GenerationRequest([Message('user', text_parts)])).prompt_tokens}-token prompt, "
            f"{n} new tokens, median of {args.repeats}"
        )
        print_table(rows, setup)
        kv_per_token = 2 * engine.model.config.num_hidden_layers * 8 * 128 * engine.dtype.itemsize
        read = engine_bytes + kv_per_token * (256 + n / 2)
        peak = next((v for k, v in ROOFLINE.items() if k in name), None)
        for path, r in rows["text"].items():
            gbs = read * r["tps"] / 1e9
            share = f" = {gbs * 1e9 / peak:.0%} of {peak / 1e12:.2f} TB/s roofline" if peak else ""
            print(f"# text, {path}: {gbs:.0f} GB/s achieved (decoder weights + KV read per token){share}")
        if device.type == "cuda":
            chat = GenerationRequest(
                [Message("user", [TextPart(prompt_of_tokens(engine, 8000))])], SamplingParams(max_new_tokens=192)
            )
            torch.cuda.reset_peak_memory_stats(device)
            list(engine.stream(chat))
            print(
                f"# one 8k-token chat ({engine.prepare(chat).prompt_tokens} prompt + 192 new tokens): "
                f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB allocated"
            )


if __name__ == "__main__":
    main()
