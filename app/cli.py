"""The `phi4mm` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys

from core.errors import Phi4mmError


def _model_flags(p: argparse.ArgumentParser) -> None:
    from core.settings import DEFAULTS as D

    p.add_argument("--model", help=f"hub id or local checkpoint folder (default {D.model})")
    p.add_argument("--revision", help="hub revision (default: refs/pr/70 for the default model)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=f"(default {D.device}: CUDA when there is one)")
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help=f"(default {D.dtype}: bf16 on a GPU, fp32 on a CPU)",
    )
    p.add_argument(
        "--attention", choices=["auto", "sdpa", "eager", "flash_attention_2"], help=f"(default {D.attention})"
    )
    p.add_argument("--quantize", choices=["none", "8bit", "4bit"], help=f"(default {D.quantize})")
    p.add_argument(
        "--backend",
        choices=["local", "openai"],
        help=f"openai: use a remote OpenAI-compatible server (default {D.backend})",
    )
    p.add_argument("--base-url", help="the remote server for --backend openai, e.g. http://gpu-box:8000/v1")
    p.add_argument("--remote-api-key", help="the key the remote server wants, if any")
    p.add_argument(
        "--max-batch", type=int, help=f"requests decoded together by the local engine (default {D.max_batch})"
    )
    p.add_argument(
        "--decode",
        choices=["auto", "compiled", "static", "dynamic"],
        help=f"decode path (default {D.decode}: compiled on CUDA, dynamic on CPU)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="serve, doctor: log loading details; ask, chat, transcribe: one metrics line per answer on stderr",
    )


def _answer_flags(p: argparse.ArgumentParser) -> None:
    """How an answer is made: `ask` and `chat` alike."""
    from core.settings import DEFAULTS

    p.add_argument("--system", help="a system prompt")
    p.add_argument("--max-new-tokens", type=int, help=f"longest answer (default {DEFAULTS.max_new_tokens})")
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling")
    p.add_argument("--top-k", type=int, default=0, help="0: off")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="1: off")
    p.add_argument("--seed", type=int, help="for sampling that repeats (default: random)")
    p.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" where a flag has a fixed default; a flag whose default comes from the
    settings (None here) says so in its own help."""

    def _get_help_string(self, action):
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.default == argparse.SUPPRESS or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    from core.settings import DEFAULTS  # a dataclass of defaults: no torch import, so --help stays fast

    parser = argparse.ArgumentParser(
        prog="phi4mm",
        description="Local multimodal assistant around Phi-4-multimodal.",
        formatter_class=_HelpWithDefaults,
    )
    # importlib, not app.doctor: `--help` and `--version` must not wait for torch to import
    parser.add_argument("--version", action="version", version=f"phi4mm {importlib.metadata.version('phi4mm')}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = _with_formatter(sub.add_parser)

    doctor = sub.add_parser("doctor", help="check versions, device, model files and the decode path; offline")
    _model_flags(doctor)

    tiny = sub.add_parser("tiny-checkpoint", help="write a tiny random checkpoint in the real format")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0, help="random seed")

    ask = sub.add_parser("ask", help="stream one answer to stdout")
    _model_flags(ask)
    ask.add_argument("text", nargs="?", default="", help="the question (may be left out with media)")
    ask.add_argument("--image", action="append", default=[], help="an image file (repeatable)")
    ask.add_argument("--audio", action="append", default=[], help="an audio file (repeatable)")
    ask.add_argument(
        "--video",
        action="append",
        default=[],
        help="a video file: frames sampled uniformly, and its sound (repeatable)",
    )
    ask.add_argument(
        "--task",
        choices=["sounds", "music", "question"],
        help="with --audio and no question: describe the sounds or the music, or answer the question spoken in it "
        "(default: none, the question is yours)",
    )
    ask.add_argument(
        "--video-frames", type=int, help=f"frames to sample from the video (default {DEFAULTS.video_frames})"
    )
    ask.add_argument("--max-crops", type=int, help=f"crop budget per image, 1-64 (default {DEFAULTS.max_crops})")
    _answer_flags(ask)

    chat = sub.add_parser("chat", help="a conversation in the terminal (/help inside it lists the commands)")
    _model_flags(chat)
    _answer_flags(chat)

    download = sub.add_parser("download", help="download the model with progress (resumes an interrupted one)")
    download.add_argument("--model", help="hub id (default microsoft/Phi-4-multimodal-instruct)")
    download.add_argument("--revision", help="hub revision (default: refs/pr/70 for the default model)")

    transcribe = sub.add_parser("transcribe", help="transcribe (and optionally translate) speech")
    _model_flags(transcribe)
    transcribe.add_argument("audio", nargs="+", help="one or more audio files (several: transcribed together)")
    transcribe.add_argument(
        "--translate-to", metavar="LANG", help="one of the eight speech languages, e.g. French or fr"
    )
    transcribe.add_argument("--cot", action="store_true", help="with --translate-to: transcript, then translation")

    meeting = sub.add_parser("summarize", help="transcript and summary of a recording (hours long is fine)")
    _model_flags(meeting)
    meeting.add_argument("audio")
    meeting.add_argument("--instruction", help="what you want from the summary, in your words")
    meeting.add_argument(
        "--format", choices=["bullets", "json", "email", "paragraph"], default="bullets", help="the summary's form"
    )
    meeting.add_argument("--length", type=int, help="at most N words (or --unit sentences); default: no limit")
    meeting.add_argument("--unit", choices=["words", "sentences"], default="words", help="what --length counts")
    meeting.add_argument(
        "--transcript-out", metavar="F", help="write the transcript (.srt if F ends in .srt, else text)"
    )
    meeting.add_argument("--out", metavar="F", help="write the summary (.md, or .json with --format json)")

    evaluate = sub.add_parser("safety-eval", help="probe sensitive-attribute inference and refusals")
    _model_flags(evaluate)
    evaluate.add_argument("--limit", type=int, help="a reproducible sample of at most N probes of each kind")
    evaluate.add_argument("--max-new-tokens", type=int, default=64, help="longest answer per probe")

    serve = sub.add_parser("serve", help="serve the web app")
    _model_flags(serve)
    serve.add_argument("--host", help=f"address to listen on (default {DEFAULTS.host}: this machine only)")
    serve.add_argument("--port", type=int, help=f"(default {DEFAULTS.port})")
    serve.add_argument(
        "--api-key",
        help="require this key on every route but /health (default: none); `ps` shows it to every local "
        "user: prefer PHI4MM_API_KEY or --api-key-file",
    )
    serve.add_argument(
        "--api-key-file", metavar="FILE", help="read the key from the first line of FILE (default: none)"
    )
    serve.add_argument(
        "--allowed-hosts",
        metavar="NAMES",
        help="host names to answer besides localhost, this machine's name and IP addresses "
        "(comma-separated, * any; default: none)",
    )
    serve.add_argument(
        "--allowed-origins",
        metavar="ORIGINS",
        help="other sites' pages (https://site.example, comma-separated, * any) allowed to send requests from "
        "a browser (default: none, only the app's own page)",
    )
    serve.add_argument(
        "--served-model-name", help="the model's name in the API (default: the hub id; phi4mm for a local folder)"
    )
    serve.add_argument("--max-inflight", type=int, help="generations at once (default: --max-batch local, 32 remote)")
    serve.add_argument(
        "--queue-size", type=int, help=f"requests that wait for a slot; past this, 429 (default {DEFAULTS.queue_size})"
    )
    return parser


def _with_formatter(add_parser):
    def add(name, **kwargs):
        return add_parser(name, formatter_class=_HelpWithDefaults, **kwargs)

    return add


def cmd_tiny_checkpoint(args) -> int:
    from app.cli_common import quiet_libraries
    from tooling.tiny_checkpoint import write_tiny_checkpoint

    quiet_libraries(False)

    print(write_tiny_checkpoint(args.dir, seed=args.seed))
    return 0


def cmd_safety_eval(args) -> int:
    from app.cli_common import open_service, settings_from
    from app.safety_eval import evaluate, format_report

    service = open_service(settings_from(args))
    print(format_report(evaluate(service.engine, limit=args.limit, max_new_tokens=args.max_new_tokens)))
    return 0


def cmd_doctor(args) -> int:
    from app.cli_common import settings_from
    from app.doctor import run_doctor

    return run_doctor(settings_from(args))


def cmd_serve(args) -> int:
    from app.cli_common import settings_from
    from app.launch import serve

    if args.api_key:
        logging.getLogger("app").warning(
            "--api-key puts the key where `ps` shows it to every user of this machine; "
            "PHI4MM_API_KEY or --api-key-file keep it out of sight"
        )
    serve(settings_from(args))
    return 0


def _lazy(module: str, name: str):
    """A command whose module (and torch, transformers, gradio) is imported only when it runs, so
    a flag error or `--help` answers at once."""

    def run(args) -> int:
        return getattr(importlib.import_module(module), name)(args)

    return run


COMMANDS = {
    "tiny-checkpoint": cmd_tiny_checkpoint,
    "ask": _lazy("app.cli_ask", "cmd_ask"),
    "chat": _lazy("app.cli_chat", "cmd_chat"),
    "download": _lazy("app.cli_download", "cmd_download"),
    "transcribe": _lazy("app.cli_ask", "cmd_transcribe"),
    "summarize": _lazy("app.cli_summarize", "cmd_summarize"),
    "safety-eval": cmd_safety_eval,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except Phi4mmError as err:
        print(f"phi4mm: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one before any work began: files are whole or absent
        print("\nphi4mm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
