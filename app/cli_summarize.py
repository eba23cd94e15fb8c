"""`phi4mm summarize`: transcript and summary of a recording, with progress on stderr. Ctrl-C keeps
what is finished: the transcript of the segments done; a summary only when it was made whole."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from app.cli_common import open_service, settings_from, write_whole


def progress_reporter():
    """(progress(fraction, stage, seconds_left), close): a bar on a terminal; elsewhere (a log file,
    a pipe) one plain line per stage, with the time left, since a bar redrawn with carriage returns
    fills a file."""
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
            left_text = f", about {left:.0f} s left" if left is not None else ""
            print(f"phi4mm: {stage} ({fraction:.0%}{left_text})", file=sys.stderr, flush=True)

    return plain, lambda: None


def _run_interruptibly(work):
    """work(cancel) in a thread; the first Ctrl-C sets `cancel` and waits for what is finished, a
    second one ends the wait (KeyboardInterrupt). (result, cancelled)."""
    cancel, finished, outcome = threading.Event(), threading.Event(), {}

    def run():
        try:
            outcome["result"] = work(cancel)
        except BaseException as err:  # noqa: BLE001 - raised again below, in the main thread
            outcome["error"] = err
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True).start()
    # An Event, not Thread.join: a Ctrl-C that lands inside join() can leave the thread looking
    # finished while it still runs (that read a result that was not there yet: KeyError 'result')
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        cancel.set()
        print("\n" * sys.stderr.isatty() + "phi4mm: stopping; keeping what is finished...", file=sys.stderr)
        finished.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], cancel.is_set()


def cmd_summarize(args) -> int:
    settings = settings_from(args)
    from app.meeting import MeetingOptions, MeetingSummarizer
    from media.audio_stream import load_long_audio
    from media.limits import MediaLimits

    limits = MediaLimits.from_settings(settings)
    samples = load_long_audio(args.audio, limits, limits.max_meeting_seconds)  # fails fast, before the model
    summarizer = MeetingSummarizer(open_service(settings))
    options = MeetingOptions(args.instruction, args.format, args.length, args.unit)
    progress, close_progress = progress_reporter()
    try:
        result, cancelled = _run_interruptibly(lambda cancel: summarizer.run(samples, options, progress, cancel))
    finally:
        close_progress()
    if args.transcript_out:
        path = Path(args.transcript_out)
        write_whole(path, result.transcript_srt() if path.suffix == ".srt" else result.transcript_txt())
    if args.out and not cancelled:
        write_whole(args.out, result.summary + "\n")
    elif args.out:  # cut short, a summary is empty or part of one (for JSON: no JSON): none is written
        print(f"phi4mm: {args.out} not written: the summary was not finished.", file=sys.stderr)
    if result.summary and not cancelled:
        print(result.summary)
    for note in result.notes + ([] if cancelled else result.remarks):  # not "invalid JSON" for a cut
        print(f"phi4mm: note: {note}", file=sys.stderr)
    return 130 if cancelled else 0
