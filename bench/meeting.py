"""Meeting benchmark: seconds per hour of audio, split by stage, for the whole pipeline
(decode -> segments -> ASR -> summary), on a generated espeak-ng meeting.

Stages: decode (file -> one 16 kHz array), features (log-mel + tokenising, in engine.prepare),
encode + prefill (time to first token minus features), decode tokens (the rest of each answer).

    python bench/meeting.py [--minutes 40] [--model DIR] [--asr-tokens N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import transformers  # noqa: E402

from app.meeting import MeetingOptions, MeetingSummarizer  # noqa: E402
from app.service import ConversationService  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.loading import LoadOptions  # noqa: E402
from media.audio_stream import load_long_audio  # noqa: E402
from media.limits import MediaLimits  # noqa: E402
from tooling.inputs import write_meeting  # noqa: E402


class StageClock:
    """Wraps one engine's prepare and stream to add up time per stage."""

    def __init__(self, engine: Engine):
        self.totals = defaultdict(float)
        self.tokens = 0
        prepare, stream = engine.prepare, engine.stream

        def timed_prepare(request):
            started = time.perf_counter()
            try:
                return prepare(request)
            finally:
                self.totals["features"] += time.perf_counter() - started

        def timed_stream(request):
            before, started = self.totals["features"], time.perf_counter()
            final = None
            for chunk in stream(request):
                final = chunk
                yield chunk
            total = time.perf_counter() - started
            if final is not None and final.metrics is not None:
                features = self.totals["features"] - before
                self.totals["encode + prefill"] += max(0.0, final.metrics.ttft_s - features)
                self.totals["decode tokens"] += max(0.0, total - final.metrics.ttft_s)
                self.tokens += final.metrics.completion_tokens

        engine.prepare, engine.stream = timed_prepare, timed_stream


def run(engine: Engine, path: Path, minutes: float, options: MeetingOptions) -> None:
    clock = StageClock(engine)
    started = time.perf_counter()
    samples = load_long_audio(path, MediaLimits(), MediaLimits().max_meeting_seconds)
    clock.totals["decode"] = time.perf_counter() - started
    result = MeetingSummarizer(ConversationService(engine)).run(samples, options)
    wall = time.perf_counter() - started
    per_hour = 60 / minutes
    print(
        f"\n{minutes:.0f}-minute recording, {result.path} path, {len(result.segments)} segments, "
        f"{clock.tokens} generated tokens, wall {wall:.1f} s"
    )
    print(f"{'stage':<18}{'seconds':>10}{'s per audio hour':>18}")
    for stage in ("decode", "features", "encode + prefill", "decode tokens"):
        print(f"{stage:<18}{clock.totals[stage]:>10.2f}{clock.totals[stage] * per_hour:>18.1f}")
    print(f"{'total (wall)':<18}{wall:>10.2f}{wall * per_hour:>18.1f}   RTFx {minutes * 60 / wall:.1f}")
    engine.__dict__.pop("prepare"), engine.__dict__.pop("stream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=40, help="the long recording (chunked path)")
    parser.add_argument("--model", help="checkpoint folder (default: a fresh tiny checkpoint)")
    parser.add_argument("--asr-tokens", type=int, help="cap per segment transcript (default: by duration)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from tooling.tiny_checkpoint import write_tiny_checkpoint

        model = Path(args.model) if args.model else write_tiny_checkpoint(tmp / "tiny")
        engine = Engine.load(LoadOptions(model=str(model)))
        device = (
            torch.cuda.get_device_name() if engine.device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
        )
        print(f"# bench/meeting.py  {time.strftime('%Y-%m-%d')}  {device}  model: {model.name}")
        options = MeetingOptions(asr_max_tokens=args.asr_tokens, summary_max_tokens=256)
        for minutes in (10, args.minutes):
            path = tmp / f"meeting{minutes:.0f}.wav"
            write_meeting(path, minutes, tmp)
            run(engine, path, minutes, options)


if __name__ == "__main__":
    main()
