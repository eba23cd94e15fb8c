"""ZeroGPU (a Space with SPACES_ZERO_GPU): a GPU exists only while a `@spaces.GPU` function runs
(ui/gpu.py decorates every event that runs the model), and each call asks for a duration
beforehand. Here: the engine as ZeroGPU needs it, and how long each event's call asks for.

All the timings below are guesses (no ZeroGPU to measure on): dynamic decoding measured 51 tok/s
on a whole H200, and ZeroGPU gives half of one."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from math import ceil

from core.errors import Phi4mmError
from core.settings import Settings

START_S = 10  # guess: attaching the GPU and the first kernels of a call
TOKENS_PER_S = 25  # guess: dynamic decode on half an H200, with a margin
TRANSCRIPT_TOKENS_PER_AUDIO_S = 4  # guess: fast speech is ~3 words, ~4 tokens a second
# Events that write out what they hear, and how many times (a translation after the transcript)
TRANSCRIBED = {"transcribe": 2, "summarize": 1}
WHOLE_CALL = {"live_stop"}  # its work (a live meeting's summary) is not in its arguments: the longest call


def zero_gpu_setup(settings: Settings):
    """(settings, engine) for ZeroGPU: nothing may touch the GPU at load or from a thread of its own,
    - the model is loaded on the CPU and moved with `.to("cuda")` at load, as ZeroGPU documents;
    - one request at a time, decoded in the event's own call (`max_batch` 1: no batching thread,
      which would outlive the call that started it);
    - the dynamic decode path: the fast paths compile and self-check with the model at load;
    - a prefix cache of a fixed size: its default is sized from the GPU's free memory, which
      cannot be read at load.
    The events' calls then ask for the time their input needs (ui/gpu.py)."""
    from app.server import import_frozen

    import_frozen(settings)  # before the model is loaded, as build_server would
    import torch

    from engine.backends import open_engine
    from engine.prefix_cache import UNKNOWN_FREE_TOKENS
    from ui.gpu import estimate_with

    prefixes = settings.prefix_cache_tokens
    settings = dataclasses.replace(
        settings,
        max_batch=1,
        decode="dynamic",
        max_inflight=1,
        dtype="bfloat16",
        prefix_cache_tokens=UNKNOWN_FREE_TOKENS if prefixes is None else prefixes,
    )
    engine = open_engine(settings, move_to="cuda" if torch.cuda.is_available() else "cpu")  # CUDA at load is virtual
    estimate_with(CallTime(settings))
    return settings, engine


class CallTime:
    """(event name, its arguments by name) -> the seconds its GPU call asks for."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def __call__(self, event: str, arguments: dict) -> int:
        limit = self.settings.zero_gpu_max_s
        if event in WHOLE_CALL:
            return limit
        audio_s = sum(media_seconds(path) for path in files_in(arguments.values()))
        answer_tokens = arguments.get("max_tokens") or self.settings.max_new_tokens
        heard_tokens = audio_s * TRANSCRIPT_TOKENS_PER_AUDIO_S * TRANSCRIBED.get(event, 0)
        seconds = ceil(START_S + (answer_tokens + heard_tokens) / TOKENS_PER_S)
        if seconds > limit and heard_tokens:
            most = (limit - START_S - answer_tokens / TOKENS_PER_S) * TOKENS_PER_S / heard_tokens * audio_s
            raise Phi4mmError(
                f"This recording is {audio_s / 60:.0f} minutes long; on this Space one GPU call covers about "
                f"{max(most, 0) / 60:.0f} minutes. Cut it shorter, or run phi4mm on your own machine."
            )
        return min(seconds, limit)  # an answer that runs longer is cut off by ZeroGPU


def files_in(values) -> Iterator[str]:
    """Every file path in Gradio's payloads: plain paths, FileData dicts, a message's files, the
    chat history's turns (re-read with every message)."""
    for value in values:
        if isinstance(value, str):
            if os.path.isfile(value):
                yield value
        elif isinstance(value, dict):
            yield from files_in(value.values())
        elif isinstance(value, (list, tuple)):
            yield from files_in(value)


def media_seconds(path: str) -> float:
    """How long a recording or video lasts, from its header (0 for a photo or what cannot be read)."""
    import av
    import soundfile

    try:
        info = soundfile.info(path)
        return info.frames / info.samplerate
    except Exception:  # not a format libsndfile knows: a container
        pass
    try:
        with av.open(path) as container:
            return (container.duration or 0) / 1e6
    except Exception:
        return 0.0
