"""The `phi4mm` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from engine.errors import Phi4mmError


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="hub id or local checkpoint folder (default: microsoft/Phi-4-multimodal-instruct)")
    p.add_argument("--revision", help="hub revision (default: refs/pr/70 for the default model)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--attention", choices=["auto", "sdpa", "eager", "flash_attention_2"])
    p.add_argument("--quantize", choices=["none", "8bit", "4bit"])
    p.add_argument("--verbose", action="store_true", help="log loading details; `ask` adds a metrics line on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phi4mm", description="Local multimodal assistant around Phi-4-multimodal.")
    sub = parser.add_subparsers(dest="command", required=True)

    tiny = sub.add_parser("tiny-checkpoint", help="write a tiny random checkpoint in the real format")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)

    ask = sub.add_parser("ask", help="stream one answer to stdout")
    _model_flags(ask)
    ask.add_argument("text", nargs="?", default="")
    ask.add_argument("--image", action="append", default=[], help="an image file (repeatable)")
    ask.add_argument("--audio", help="an audio file")
    ask.add_argument("--system", help="a system prompt")
    ask.add_argument("--max-new-tokens", type=int)
    ask.add_argument("--temperature", type=float, default=0.0)
    ask.add_argument("--top-p", type=float, default=1.0)
    ask.add_argument("--top-k", type=int, default=0)
    ask.add_argument("--repetition-penalty", type=float, default=1.0)
    ask.add_argument("--seed", type=int)
    ask.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")

    serve = sub.add_parser("serve", help="serve the web app")
    _model_flags(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--api-key")
    serve.add_argument("--backend", choices=["local", "openai"])
    serve.add_argument("--base-url")
    return parser


def _quiet_libraries(verbose: bool) -> None:
    """Keep stdout for answers and stderr for what matters: library progress bars, load reports
    and warnings stay off; --verbose adds our own loading details."""
    import transformers

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("engine", "app"):
        logging.getLogger(ours).setLevel(logging.INFO if verbose else logging.WARNING)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")
    logging.getLogger("bitsandbytes").setLevel(logging.CRITICAL)


def _settings(args):
    from app.settings import Settings

    names = ("model", "revision", "device", "dtype", "attention", "quantize", "host", "port", "api_key", "backend", "base_url")
    return Settings.from_env(**{n: getattr(args, n, None) for n in names})


def cmd_tiny_checkpoint(args) -> int:
    from engine.tiny_checkpoint import write_tiny_checkpoint

    print(write_tiny_checkpoint(args.dir, seed=args.seed))
    return 0


def cmd_ask(args) -> int:
    from engine.engine import Engine
    from engine.media import load_audio, load_image
    from engine.request import GenerationRequest, Message, SamplingParams, TextPart

    settings = _settings(args)
    parts = [load_image(path) for path in args.image]
    if args.audio:
        parts.append(load_audio(args.audio))
    if args.text or not parts:
        parts.append(TextPart(args.text))
    messages = ([Message("system", [TextPart(args.system)])] if args.system else []) + [Message("user", parts)]
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens or settings.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
    )
    request = GenerationRequest(messages, params)
    request.validate()  # before the slow model load
    engine = Engine.load(settings.load_options(), settings.context_window)
    final = None
    for chunk in engine.stream(request):
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
        final = chunk
    sys.stdout.write("\n")
    if args.verbose and final is not None and final.metrics is not None:
        m = final.metrics
        print(
            f"adapter={m.adapter} prompt_tokens={m.prompt_tokens} completion_tokens={m.completion_tokens} "
            f"ttft_ms={m.ttft_s * 1000:.1f} tok_s={m.tokens_per_s:.1f}",
            file=sys.stderr,
        )
    return 0


def cmd_serve(args) -> int:
    from app.launch import serve

    serve(_settings(args))
    return 0


COMMANDS = {"tiny-checkpoint": cmd_tiny_checkpoint, "ask": cmd_ask, "serve": cmd_serve}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries(getattr(args, "verbose", False))
    try:
        return COMMANDS[args.command](args)
    except Phi4mmError as err:
        print(f"phi4mm: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
