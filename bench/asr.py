"""ASR benchmark: RTFx (audio seconds / processing seconds, the Open ASR leaderboard's measure) on
a speech set generated here with espeak-ng, transcribed the way `phi4mm transcribe` does it
(segments in flight together, transcript budget by duration), one request at a time and with
continuous batching, in the same run.

    python bench/asr.py [--utterances 32] [--max-batch 16] [--decode MODE] [--full-size [--layers N]]

On random weights no transcript ends early: every segment runs to its token budget, so these
figures are a floor on what the released weights reach.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import transformers  # noqa: E402

from app.meeting import MeetingOptions, MeetingSummarizer, Tracker  # noqa: E402
from app.service import ConversationService  # noqa: E402
from bench.engine import open_bench_engine  # noqa: E402
from engine.engine import Engine  # noqa: E402
from media.audio import to_mono_16k  # noqa: E402
from media.limits import SAMPLE_RATE  # noqa: E402
from tooling.inputs import MEETING_SENTENCES, speak  # noqa: E402


def speech_set(count: int, folder: Path) -> list[np.ndarray]:
    """`count` utterances of 2-4 sentences each (about 5-12 s), 16 kHz mono."""
    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        picks = rng.choice(len(MEETING_SENTENCES), size=int(rng.integers(2, 5)), replace=False)
        text = " ".join(MEETING_SENTENCES[p] for p in picks)
        clips.append(to_mono_16k(speak(text, folder / f"utterance{i}.wav"), 22050))
    return clips


def transcribe_all(engine: Engine, clips: list[np.ndarray], max_tokens: int | None = None) -> tuple[float, int]:
    """(wall seconds, generated tokens) for transcribing every clip, each transcript up to
    `max_tokens` (None: the product's budget for the clip's duration)."""
    tokens_before = engine.tokens_generated
    started = time.perf_counter()
    MeetingSummarizer(ConversationService(engine)).transcribe_many(
        clips, MeetingOptions(asr_max_tokens=max_tokens), Tracker(1, lambda *_: None), threading.Event()
    )
    return time.perf_counter() - started, engine.tokens_generated - tokens_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--decode", default="auto", help="auto | compiled | static | dynamic")
    parser.add_argument("--full-size", action="store_true", help="the released architecture, random weights (GPU)")
    parser.add_argument("--layers", type=int, help="full-size mode: fewer layers in every stack (smoke test)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        engine, described, _ = open_bench_engine(Path(tmp), args.full_size, args.layers, args.decode)
        clips = speech_set(args.utterances, Path(tmp))
        audio_s = sum(len(c) for c in clips) / SAMPLE_RATE
        print(
            f"# bench/asr.py  {time.strftime('%Y-%m-%d')}  device: {described}, "
            f"{len(clips)} espeak-ng utterances, {audio_s:.1f} s of audio"
        )
        transcribe_all(engine, clips[:2])  # warm-up (and compiling, in compiled mode)
        print(f"{'path':<16} {'wall_s':>8} {'tokens':>7} {'RTFx':>8}")
        rtfx = {}
        for label, batch in (("one at a time", 1), (f"batched x{args.max_batch}", args.max_batch)):
            engine.enable_batching(batch)
            seconds, tokens = transcribe_all(engine, clips)
            engine.scheduler.close()
            rtfx[batch] = audio_s / seconds
            print(f"{label:<16} {seconds:>8.2f} {tokens:>7} {rtfx[batch]:>8.1f}")
        print(f"# batched / one at a time: {rtfx[args.max_batch] / rtfx[1]:.2f}")


if __name__ == "__main__":
    main()
