"""The one script to run the first time a GPU is lent. The released configuration at full size,
random weights (bf16 on a GPU, fp32 on a CPU) and random r=256 / r=320 adapters; every figure is
measured beside its baseline in the same run. Prints one table for bench/RESULTS.md and writes the
same figures as JSON: the device, and per figure a `value` and its `baseline`.

    python bench/gpu_check.py                          # a GPU (target: under 8 minutes on one H100)
    python bench/gpu_check.py --layers 2 --tokens 4 --clips 1 --streams 2 --prompt-tokens 32 \
        --max-crops 1 --speech-seconds 5 --asr-tokens 2 --out /tmp/gpu_check.json   # CPU smoke (CI)

Start-up (`phi4mm serve`, cold and warm compile cache, bench/startup.py) runs on a GPU, last; on a
CPU only with --startup.

A figure that fails (or needs CUDA, on a CPU) is reported with its reason; the others still run.
Never commit the JSON of a CPU run.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from bench.asr import speech_set, transcribe_all  # noqa: E402
from bench.concurrency import aggregate_tokens_per_s  # noqa: E402
from bench.engine import (  # noqa: E402
    ROOFLINE,
    full_size_engine,
    prompt_of_tokens,
    reference_generate,
    run_ours,
    run_reference,
    write_full_size_checkpoint,
)
from core.errors import first_line  # noqa: E402
from engine.request import GenerationRequest, SamplingParams  # noqa: E402
from media.audio import to_mono_16k  # noqa: E402
from media.limits import SAMPLE_RATE  # noqa: E402
from media.parts import (  # noqa: E402
    AudioPart,
    ImagePart,
    Message,  # noqa: E402
    TextPart,
)
from tooling.inputs import MODALITIES, make_photo, speak  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_check.json"
ADAPTER_OF = {"text": "base", "image": "vision", "audio": "speech"}


class Report:
    """The table as it grows, rewritten to `out` as JSON after every figure: a run cut off by its
    time limit still leaves what it measured."""

    def __init__(self, out: Path, **about):
        self.out, self.about = out, about
        self.figures: dict[str, dict] = {}
        self.started = time.perf_counter()

    def add(self, name: str, value, baseline, unit: str, note: str = "") -> None:
        self.figures[name] = {"value": value, "baseline": baseline, "unit": unit, "note": note}
        ratio = f"{value / baseline:.2f}x" if isinstance(value, (int, float)) and baseline else ""
        print(f"| {name} | {_fmt(value)} {unit} | {_fmt(baseline)} | {ratio} | {note} |", flush=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(
            json.dumps(
                {**self.about, "seconds": round(time.perf_counter() - self.started, 1), "figures": self.figures},
                indent=2,
            )
            + "\n"
        )

    def attempt(self, name: str, unit: str, measure) -> None:
        """Runs `measure()` -> (value, baseline); a failure is reported, never fatal."""
        try:
            value, baseline = measure()
        except Exception as err:  # noqa: BLE001 - one figure failing must not lose the others
            self.add(name, None, None, unit, f"failed: {type(err).__name__}: {first_line(err)[:160]}")
            return
        self.add(name, value, baseline, unit)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def request(parts, tokens: int) -> GenerationRequest:
    return GenerationRequest([Message("user", parts)], SamplingParams(max_new_tokens=tokens))


def generate_tokens(engine, req) -> list[int]:
    """transformers' own `generate` on the engine's processor inputs, greedy, under the request's adapter."""
    prepared = engine.prepare(req)
    return reference_generate(engine, prepared, req.params.max_new_tokens)[0, prepared.prompt_tokens :].tolist()


def agreement(a: list[int], b: list[int]) -> float:
    """The share of tokens before the first difference."""
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return same / max(len(a), len(b), 1)


def seconds_of_speech(folder: Path, seconds: float) -> np.ndarray:
    clip = to_mono_16k(
        speak("Please summarise what was decided in the meeting about the budget.", folder / "question.wav"), 22050
    )
    return np.resize(clip, int(seconds * SAMPLE_RATE)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, help="fewer layers in every stack (a CPU smoke run)")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per measured answer")
    parser.add_argument("--clips", type=int, default=32, help="espeak-ng clips for RTFx")
    parser.add_argument("--streams", type=int, default=16, help="concurrent mixed streams")
    # a CPU smoke run's smaller inputs (each figure still runs; on a CPU the prefills are most of the time)
    parser.add_argument("--prompt-tokens", type=int, default=256, help="the text prompt's length")
    parser.add_argument("--max-crops", type=int, help="crop budget per image (default: the product's)")
    parser.add_argument("--speech-seconds", type=float, default=30.0, help="the speech of the TTFT figure")
    parser.add_argument("--asr-tokens", type=int, help="cap on each transcript (default: the budget by duration)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--startup", action=argparse.BooleanOptionalAction, help="default: on a GPU only")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        from tooling.tiny_checkpoint import write_tiny_checkpoint

        folder = Path(tmp)
        tiny = write_tiny_checkpoint(folder / "tiny")
        engine = full_size_engine(tiny, device, args.layers)
        if args.max_crops:
            engine.limits = dataclasses.replace(engine.limits, max_crops=args.max_crops)
        layers = engine.model.config.num_hidden_layers
        report = Report(args.out, device=name, layers=layers, dtype=str(engine.dtype), tokens=args.tokens)
        print(
            f"# bench/gpu_check.py  {time.strftime('%Y-%m-%d')}  {name}  torch {torch.__version__}  "
            f"transformers {transformers.__version__}  full size, {layers} layers, {engine.dtype}, "
            f"{args.tokens} new tokens\n"
        )
        print("| figure | value | baseline | ratio | note |\n| --- | --- | --- | --- | --- |")
        measure_bf16(engine, report, args, folder)
        if cuda:  # the bf16 baseline, then the bf16 model is freed to make room
            text = request([TextPart(prompt_of_tokens(engine, args.prompt_tokens))], args.tokens)
            engine.set_decode("dynamic")
            bf16 = run_ours(engine, text)[1], torch.cuda.memory_allocated(device) / 2**30
            engine.close()
            del engine
            free_gpu()
            measure_four_bit(tiny, report, args, folder, text, bf16)
        else:
            for figure in FOUR_BIT:
                report.add(figure, None, None, FOUR_BIT[figure], "CUDA only (bitsandbytes)")
        measure_startup(tiny, report, args, folder, cuda)
    print(f"\n# {time.perf_counter() - report.started:.0f} s in all; wrote {args.out}")


FOUR_BIT = {
    "4-bit nf4: decode tok/s, base (vs bf16, both dynamic)": "tok/s",
    "4-bit nf4: peak memory, load + one answer (vs bf16 weights)": "GiB",
}


STARTUP = ("serve start-up, compiled, cold (vs dynamic)", "serve start-up, compiled, warm (vs dynamic)")


def measure_startup(tiny: Path, report: Report, args, folder: Path, cuda: bool) -> None:
    """`phi4mm serve` until /health, compiled with an empty and then a filled compile cache, each
    against --decode dynamic (bench/startup.py), on the full size written to disk."""
    if not (cuda if args.startup is None else args.startup):
        for figure in STARTUP:
            report.add(figure, None, None, "s", "skipped on a CPU (--startup, or bench/startup.py)")
        return
    from bench.startup import measure

    times = {}

    def cold():
        device = torch.device("cuda" if cuda else "cpu")
        checkpoint = folder / "full"  # measure_four_bit's, when it ran
        if not checkpoint.is_dir():
            checkpoint = write_full_size_checkpoint(tiny, checkpoint, device, args.layers)
        times.update(measure(str(checkpoint), None, 900, show=lambda line: print(f"<!-- {line} -->", flush=True)))
        return times["cold"], times["dynamic"]

    report.attempt(STARTUP[0], "s", cold)
    report.attempt(STARTUP[1], "s", lambda: (times["warm"], times["dynamic"]))


def free_gpu() -> None:
    torch._dynamo.reset()  # compiled graphs hold the weights they were compiled with
    gc.collect()
    torch.cuda.empty_cache()


def measure_four_bit(
    tiny: Path, report: Report, args, folder: Path, text: GenerationRequest, bf16: tuple[float, float]
) -> None:
    """The full size written to disk and loaded the product's way with --quantize 4bit, against the
    bf16 model's (tok/s, GiB of weights)."""
    from engine.engine import Engine
    from engine.loading import LoadOptions

    device = torch.device("cuda")

    def tokens_per_s():
        checkpoint = write_full_size_checkpoint(tiny, folder / "full", device, args.layers)
        free_gpu()
        torch.cuda.reset_peak_memory_stats(device)
        four_bit = Engine.load(LoadOptions(model=str(checkpoint), device="cuda", quantize="4bit"))
        four_bit.set_decode("auto")  # dynamic: the fast paths do not take quantized weights
        run_ours(four_bit, text)  # warm-up
        return run_ours(four_bit, text)[1], bf16[0]

    tps, memory = FOUR_BIT
    report.attempt(tps, FOUR_BIT[tps], tokens_per_s)
    if report.figures[tps]["value"] is not None:
        report.add(memory, torch.cuda.max_memory_allocated(device) / 2**30, bf16[1], FOUR_BIT[memory])


def measure_bf16(engine, report: Report, args, folder: Path) -> None:
    """Every figure of the bf16 model (fp32 on a CPU)."""
    n, device, name = args.tokens, engine.device, report.about["device"]
    cuda = device.type == "cuda"
    inputs = {
        "text": [TextPart(prompt_of_tokens(engine, args.prompt_tokens))],
        "image": MODALITIES["image"](),
        "audio": MODALITIES["audio"](),
    }

    engine.set_decode("dynamic")  # first: these figures do not wait for the fast path to compile
    dynamic = {m: engine.generate(request(p, n))[1] for m, p in inputs.items()}
    reference = {m: generate_tokens(engine, request(p, n)) for m, p in inputs.items()}

    def dynamic_speed():
        theirs, mine = run_reference(engine, request(inputs["text"], n)), run_ours(engine, request(inputs["text"], n))
        return mine[1], theirs[1]

    report.attempt("decode tok/s, base (dynamic vs generate)", "tok/s", dynamic_speed)
    fast = "compiled" if cuda else "static"
    started = time.perf_counter()
    mode = engine.set_decode(fast, static_rows=args.streams)  # a bucket per batch size up to the streams
    report.add(
        f"start-up of the {fast} path: compiling + self-check",
        time.perf_counter() - started,
        engine.self_check_s,
        "s",
        "baseline: the self-check alone; "
        + (f"fell back: {engine.decode_fallback}" if engine.decode_fallback else "self-check passed"),
    )
    ours = {m: engine.generate(request(p, n))[1] for m, p in inputs.items()}
    for m in inputs:
        report.add(
            f"greedy agreement, {ADAPTER_OF[m]}: {mode} vs generate",
            agreement(ours[m], reference[m]),
            agreement(dynamic[m], reference[m]),
            "",
            "baseline: dynamic vs generate",
        )
    for m, parts in inputs.items():

        def speed(m=m, parts=parts):
            theirs, mine = run_reference(engine, request(parts, n)), run_ours(engine, request(parts, n))
            return mine[1], theirs[1]

        report.attempt(f"decode tok/s, {ADAPTER_OF[m]} ({mode} vs generate)", "tok/s", speed)
    weights = sum(
        p.numel() * p.element_size()
        for k, p in engine.model.named_parameters()
        if "embed_tokens_extend" not in k and "lora_" not in k
    )
    tps = report.figures.get(f"decode tok/s, base ({mode} vs generate)", {}).get("value")
    peak = next((v for k, v in ROOFLINE.items() if k in name), None)
    report.add(
        "decoder weights read, base",
        weights * tps / 1e9 if tps else None,
        peak / 1e9 if peak else None,
        "GB/s",
        "baseline: the memory-bandwidth roofline" if peak else "no roofline known for this device",
    )

    def ttft(parts):
        def measure():
            theirs, mine = run_reference(engine, request(parts, 2)), run_ours(engine, request(parts, 2))
            return mine[0] * 1e3, theirs[0] * 1e3

        return measure

    report.attempt(
        "TTFT, one 448 px photo + question",
        "ms",
        ttft([ImagePart(make_photo(448, 448)), TextPart("What is in this photo?")]),
    )
    report.attempt(
        f"TTFT, {args.speech_seconds:g} s of speech",
        "ms",
        ttft([AudioPart(seconds_of_speech(folder, args.speech_seconds)), TextPart("Answer the question.")]),
    )

    host = {}

    def streams():
        engine.enable_batching(args.streams)
        aggregate_tokens_per_s(engine, 2, 2)  # warm-up
        many = aggregate_tokens_per_s(engine, args.streams, n)
        scheduler = engine.scheduler
        host["per_step"] = scheduler.host_seconds / max(scheduler.steps, 1) * 1e6
        one = aggregate_tokens_per_s(engine, 1, n)
        scheduler.close()
        return many, one

    report.attempt(f"{args.streams} mixed streams, aggregate tok/s (vs 1 stream)", "tok/s", streams)

    def slot_streams():
        from bench.slots import slot_tokens_per_s

        slot_tokens_per_s(engine, 2, 2)  # warm-up
        return slot_tokens_per_s(engine, args.streams, n), slot_tokens_per_s(engine, 1, n)

    report.attempt(
        f"{args.streams} mixed streams on the {mode} step, aggregate decode tok/s (vs 1 stream)", "tok/s", slot_streams
    )
    report.attempt(
        f"scheduler host overhead per step, {args.streams} streams (on a GPU includes the read-back wait)",
        "µs",
        lambda: (host["per_step"], None),
    )

    def mixed_adapters():
        """Four streams, one per adapter make-up (none, vision, speech, vision + speech): the
        router's batched LoRA update against the same requests one at a time."""
        engine.enable_batching(1)
        serial = aggregate_tokens_per_s(engine, 4, n)
        engine.enable_batching(4)
        batched = aggregate_tokens_per_s(engine, 4, n)
        engine.scheduler.close()
        return batched, serial

    report.attempt("4 mixed-adapter streams batched, aggregate tok/s (vs one at a time)", "tok/s", mixed_adapters)

    def rtfx():
        clips = speech_set(args.clips, folder)
        seconds = sum(len(c) for c in clips) / SAMPLE_RATE
        results = {}
        for batch in (1, 16):
            engine.enable_batching(batch)
            results[batch] = seconds / transcribe_all(engine, clips, args.asr_tokens)[0]
            engine.scheduler.close()
        return results[16], results[1]

    report.attempt(f"RTFx, {args.clips} espeak-ng clips, batched x16 (vs one at a time)", "x", rtfx)

    def chat_memory():
        chat = request([TextPart(prompt_of_tokens(engine, 8000))], 64)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        list(engine.stream(chat))
        return torch.cuda.max_memory_allocated(device) / 2**30, before / 2**30

    memory = "peak memory, one 8k-token chat (vs weights alone)"
    if cuda:
        report.attempt(memory, "GiB", chat_memory)
    else:
        report.add(memory, None, None, "GiB", "CUDA only")


if __name__ == "__main__":
    main()
