"""The `phi4mm` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import time
import warnings

from core.errors import Phi4mmError
from media.limits import MediaLimits


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
    p.add_argument("--verbose", action="store_true", help="log loading details; `ask` adds a metrics line on stderr")


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
    ask.add_argument("--audio", help="an audio file")
    ask.add_argument("--video", help="a video file: frames sampled uniformly, and its sound")
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
    ask.add_argument("--system", help="a system prompt")
    ask.add_argument("--max-new-tokens", type=int, help=f"longest answer (default {DEFAULTS.max_new_tokens})")
    ask.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ask.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling")
    ask.add_argument("--top-k", type=int, default=0, help="0: off")
    ask.add_argument("--repetition-penalty", type=float, default=1.0, help="1: off")
    ask.add_argument("--seed", type=int, help="for sampling that repeats (default: random)")
    ask.add_argument("--stop", action="append", default=[], help="a stop string (repeatable)")

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
    """The settings, with every flag that names a settings field (its dest is the field's name)
    overriding it: the flags are the only list of which settings a command takes."""
    from dataclasses import fields

    from core.settings import Settings

    return Settings.from_env(**{f.name: getattr(args, f.name, None) for f in fields(Settings)})


def cmd_tiny_checkpoint(args) -> int:
    from tooling.tiny_checkpoint import write_tiny_checkpoint

    print(write_tiny_checkpoint(args.dir, seed=args.seed))
    return 0


def _service(settings):
    from app.service import open_service

    return open_service(settings)


def _print_metrics(final) -> None:
    m = final.metrics
    print(
        f"adapter={m.adapter} prompt_tokens={m.prompt_tokens} completion_tokens={m.completion_tokens} "
        f"ttft_ms={m.ttft_s * 1000:.1f} tok_s={m.tokens_per_s:.1f}",
        file=sys.stderr,
    )


def _stream_to_stdout(replies, verbose: bool) -> None:
    """Print replies as they come. A guard refusal cannot un-print what was shown (never the
    blocked text itself), so it starts on a line of its own."""
    final = None
    for reply in replies:
        sys.stdout.write(("\n" + reply.text) if reply.replace else reply.text)
        sys.stdout.flush()
        final = reply
    sys.stdout.write("\n")
    if verbose and final is not None and final.metrics is not None:
        _print_metrics(final)


def cmd_ask(args) -> int:
    from engine.request import GenerationRequest, SamplingParams
    from media.audio import load_audio
    from media.images import load_image
    from media.parts import ImagePart, Message, TextPart
    from media.video import load_video
    from prompts import tasks

    if not (args.text or args.image or args.audio or args.video):
        print(
            'phi4mm: ask needs a question, media (--image, --audio, --video) or both, e.g. phi4mm ask "Hello"',
            file=sys.stderr,
        )
        return 2
    if args.task and (args.text or not args.audio):
        print("phi4mm: --task takes --audio and no question of its own (the task is the question)", file=sys.stderr)
        return 2
    settings = _settings(args)
    limits = MediaLimits.from_settings(settings)
    parts = [ImagePart(load_image(path, limits)) for path in args.image]
    if args.video:
        video = load_video(args.video, limits)
        if video.sound_left_out:
            print(f"phi4mm: {video.sound_left_out}", file=sys.stderr)
        parts.append(video)  # its frames, its soundtrack and when each frame was taken
    if args.audio:
        parts.append(load_audio(args.audio, limits))
    text = tasks.AUDIO_TASKS[args.task][1] if args.task else args.text  # the spoken question's is empty
    if text or not parts:
        parts.append(TextPart(text))
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
    GenerationRequest(messages, params, max_crops=settings.max_crops).validate()  # before the slow model load
    service = _service(settings)
    _stream_to_stdout(service.chat(messages, params, max_crops=settings.max_crops), args.verbose)
    return 0


def cmd_transcribe(args) -> int:
    from app.meeting import MeetingOptions
    from media.audio import load_audio
    from prompts import tasks
    from prompts.languages import resolve_language

    settings = _settings(args)
    limits = MediaLimits.from_settings(settings)
    try:
        language = resolve_language(args.translate_to) if args.translate_to else None
    except ValueError as err:
        print(f"phi4mm: {err}", file=sys.stderr)
        return 2
    if args.cot and not language:
        print("phi4mm: --cot needs --translate-to LANG.", file=sys.stderr)
        return 2
    if language and len(args.audio) > 1:
        print("phi4mm: --translate-to takes one file at a time.", file=sys.stderr)
        return 2
    clips = [load_audio(path, limits, max_seconds=limits.max_task_audio_seconds) for path in args.audio]
    service = _service(settings)
    if not language and (len(clips) > 1 or clips[0].seconds > MeetingOptions.segment_seconds):
        return _transcribe_batched(service, args.audio, clips, args.verbose)
    replies = service.transcribe(clips[0], translate_to=language, cot=args.cot)
    if not args.cot:
        _stream_to_stdout(replies, args.verbose)
        return 0
    answer, final = "", None
    for reply in replies:
        answer, final = (reply.text if reply.replace else answer + reply.text), reply
    split = tasks.split_transcript_translation(answer)
    print(f"Transcript:\n{split.transcript}\n")
    if split.translation is None:
        print(f"Translation ({language}): {tasks.NO_TRANSLATION}")
    else:
        print(f"Translation ({language}):\n{split.translation}")
    if args.verbose and final.metrics is not None:
        _print_metrics(final)
    return 0


def _transcribe_batched(service, paths: list[str], clips: list, verbose: bool) -> int:
    """Several files, or a recording longer than one segment: ~30 s segments cut at quiet points,
    all in flight together (the engine batches them); RTFx = audio seconds / wall seconds."""
    import threading

    from app.meeting import MeetingOptions, MeetingSummarizer, Tracker

    started = time.perf_counter()
    results = MeetingSummarizer(service).transcribe_many(
        [clip.samples for clip in clips], MeetingOptions(), Tracker(1, lambda *_: None), threading.Event()
    )
    seconds = time.perf_counter() - started
    for path, (segments, notes) in zip(paths, results):
        if len(paths) > 1:
            print(f"== {path}")
        print(" ".join(s.text for s in segments if s.text))
        for note in notes:
            print(f"phi4mm: {note}", file=sys.stderr)
    audio = sum(clip.seconds for clip in clips)
    if verbose:
        print(
            f"files={len(clips)} audio_s={audio:.1f} wall_s={seconds:.2f} rtfx={audio / seconds:.1f}", file=sys.stderr
        )
    return 0


def _progress_reporter():
    """(progress(fraction, stage, seconds_left), close): a bar on a terminal; elsewhere (a log file,
    a pipe) one plain line per stage, since a bar redrawn with carriage returns fills a file."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=100, unit="%", file=sys.stderr, bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

        def progress(fraction, stage, left):
            bar.set_description_str(stage)
            bar.set_postfix_str(f"about {left:.0f} s left" if left is not None else "")
            bar.update(round(fraction * 100) - bar.n)

        return progress, bar.close
    shown = set()

    def plain(fraction, stage, left):
        if stage not in shown:
            shown.add(stage)
            print(f"phi4mm: {stage} ({fraction:.0%})", file=sys.stderr, flush=True)

    return plain, lambda: None


def cmd_summarize(args) -> int:
    import threading
    from pathlib import Path

    from app.meeting import MeetingOptions, MeetingSummarizer
    from media.audio_stream import load_long_audio

    settings = _settings(args)
    limits = MediaLimits.from_settings(settings)
    samples = load_long_audio(args.audio, limits, limits.max_meeting_seconds)  # fails fast, before the model
    summarizer = MeetingSummarizer(_service(settings))
    options = MeetingOptions(args.instruction, args.format, args.length, args.unit)
    progress, close_progress = _progress_reporter()

    cancel, finished, outcome = threading.Event(), threading.Event(), {}

    def work():
        try:
            outcome["result"] = summarizer.run(samples, options, progress, cancel)
        except BaseException as err:  # noqa: BLE001 - raised again below, in the main thread
            outcome["error"] = err
        finally:
            finished.set()

    threading.Thread(target=work, daemon=True).start()
    # An Event, not Thread.join: a Ctrl-C that lands inside join() can leave the thread looking
    # finished while it still runs (that read a result that was not there yet: KeyError 'result')
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:  # Ctrl-C: stop, but keep and write what is finished
        cancel.set()
        print("\n" * sys.stderr.isatty() + "phi4mm: stopping; keeping what is finished...", file=sys.stderr)
        finished.wait()
    close_progress()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    if args.transcript_out:
        path = Path(args.transcript_out)
        path.write_text(result.transcript_srt() if path.suffix == ".srt" else result.transcript_txt(), encoding="utf-8")
    if args.out:
        Path(args.out).write_text(result.summary + "\n", encoding="utf-8")
    print(result.summary)
    for note in result.notes + result.remarks:
        print(f"phi4mm: note: {note}", file=sys.stderr)
    return 0 if result.complete or not cancel.is_set() else 130


def cmd_safety_eval(args) -> int:
    from app.safety_eval import evaluate, format_report

    service = _service(_settings(args))
    print(format_report(evaluate(service.engine, limit=args.limit, max_new_tokens=args.max_new_tokens)))
    return 0


def cmd_doctor(args) -> int:
    from app.doctor import run_doctor

    return run_doctor(_settings(args))


def cmd_serve(args) -> int:
    from app.launch import serve

    if args.api_key:
        logging.getLogger("app").warning(
            "--api-key puts the key where `ps` shows it to every user of this machine; "
            "PHI4MM_API_KEY or --api-key-file keep it out of sight"
        )
    serve(_settings(args))
    return 0


COMMANDS = {
    "tiny-checkpoint": cmd_tiny_checkpoint,
    "ask": cmd_ask,
    "transcribe": cmd_transcribe,
    "summarize": cmd_summarize,
    "safety-eval": cmd_safety_eval,
    "serve": cmd_serve,
    "doctor": cmd_doctor,
}


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
