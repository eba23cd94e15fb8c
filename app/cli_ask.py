"""`phi4mm ask` and `phi4mm transcribe`: one answer or one transcript, streamed to stdout."""

from __future__ import annotations

import sys
import time

from app.cli_common import open_service, print_metrics, settings_from, stream_to_stdout


def usage_error(message: str) -> int:
    print(f"phi4mm: {message}", file=sys.stderr)
    return 2


def sampling_params(args, settings):
    from engine.request import SamplingParams

    return SamplingParams(
        max_new_tokens=args.max_new_tokens or settings.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        stop=tuple(args.stop),
    )


def load_media(limits, images=(), audio=(), videos=()) -> list:
    """The message parts of the files named, in the order images, videos, audio clips."""
    from media.audio import load_audio
    from media.images import load_image
    from media.parts import ImagePart
    from media.video import load_video

    parts = [ImagePart(load_image(path, limits)) for path in images]
    for path in videos:
        video = load_video(path, limits)
        if video.sound_left_out:
            print(f"phi4mm: {video.sound_left_out}", file=sys.stderr)
        parts.append(video)  # its frames, its soundtrack and when each frame was taken
    return parts + [load_audio(path, limits) for path in audio]


def cmd_ask(args) -> int:
    if not (args.text or args.image or args.audio or args.video):
        return usage_error('ask needs a question, media (--image, --audio, --video) or both, e.g. phi4mm ask "Hello"')
    if args.task and (args.text or not args.audio):
        return usage_error("--task takes --audio and no question of its own (the task is the question)")
    settings = settings_from(args, log_loading=False)
    from engine.request import GenerationRequest
    from media.limits import MediaLimits
    from media.parts import Message, TextPart
    from prompts import tasks

    parts = load_media(MediaLimits.from_settings(settings), args.image, args.audio, args.video)
    text = tasks.AUDIO_TASKS[args.task][1] if args.task else args.text  # the spoken question's is empty
    if text or not parts:
        parts.append(TextPart(text))
    messages = ([Message("system", [TextPart(args.system)])] if args.system else []) + [Message("user", parts)]
    params = sampling_params(args, settings)
    GenerationRequest(messages, params, max_crops=settings.max_crops).validate()  # before the slow model load
    service = open_service(settings)
    stream_to_stdout(service.chat(messages, params, max_crops=settings.max_crops), args.verbose)
    return 0


def cmd_transcribe(args) -> int:
    if args.cot and not args.translate_to:
        return usage_error("--cot needs --translate-to LANG.")
    if args.translate_to and len(args.audio) > 1:
        return usage_error("--translate-to takes one file at a time.")
    from prompts.languages import resolve_language

    try:
        language = resolve_language(args.translate_to) if args.translate_to else None
    except ValueError as err:
        return usage_error(str(err))
    settings = settings_from(args, log_loading=False)
    from app.meeting import MeetingOptions
    from app.service import Answer
    from media.audio import load_audio
    from media.limits import MediaLimits
    from prompts import tasks

    limits = MediaLimits.from_settings(settings)
    clips = [load_audio(path, limits, max_seconds=limits.max_task_audio_seconds) for path in args.audio]
    service = open_service(settings)
    if not language and (len(clips) > 1 or clips[0].seconds > MeetingOptions.segment_seconds):
        return _transcribe_batched(service, args.audio, clips, args.verbose)
    replies = service.transcribe(clips[0], translate_to=language, cot=args.cot)
    if not args.cot:
        stream_to_stdout(replies, args.verbose)
        return 0
    answer = Answer()
    for reply in replies:
        answer.add(reply)
    final = answer.final
    split = tasks.split_transcript_translation(answer.text)
    print(f"Transcript:\n{split.transcript}\n")
    if split.translation is None:
        print(f"Translation ({language}): {tasks.NO_TRANSLATION}")
    else:
        print(f"Translation ({language}):\n{split.translation}")
    if args.verbose and final.metrics is not None:
        print_metrics(final)
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
