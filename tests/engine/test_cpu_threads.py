"""The decode loop's thread keeps the process's one team of CPU threads (core/cpu_threads.py):
request preparation and media decoding run `alone()`, the model starts on a thread that ends.
Teams are counted as the threads of a fresh process (a subprocess, so no other test's threads
are counted): a thread's OpenMP team is one more thread for as long as the thread lives. And a
compile after the thread that compiled first has ended does not crash (the kept device guard)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

from core.cpu_threads import _thread_settings, in_passing_thread
from core.settings import Settings
from engine import backends

ROOT = Path(__file__).resolve().parents[2]

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the device guard is replaced only where no GPU answers")
needs_teams = pytest.mark.skipif(
    _thread_settings() is None or (os.cpu_count() or 1) < 2, reason="needs PyTorch's OpenMP build and two CPUs"
)

# a helper for the subprocesses: how many threads a worker thread adds to the process while it
# lives, having done `work` (its own thread, plus its team's threads if it started one)
COUNTING = """
import os, threading, time
def threads():
    return len(os.listdir("/proc/self/task"))
def added_by(work):
    baseline, ready, release, failed = threads(), threading.Event(), threading.Event(), []
    def run():
        try:
            work()
        except BaseException as err:
            failed.append(err)
        ready.set(); release.wait()
    thread = threading.Thread(target=run); thread.start(); ready.wait()
    added = threads() - baseline
    if failed:
        release.set(); raise failed[0]
    release.set(); thread.join()
    deadline = time.monotonic() + 5  # a team's threads end a little after their thread
    while threads() > baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    return added
"""


def _run(script: str) -> list[str]:
    # two threads a thread, as on CI's two cores (the test processes themselves run one each)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", COUNTING + textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


@needs_teams
def test_alone_gives_the_thread_one_thread_and_its_own_count_back():
    before, inside, other_inside, after = _run(
        """
        import torch
        from core.cpu_threads import alone
        def count_in_another_thread():
            box = []
            thread = threading.Thread(target=lambda: box.append(torch.get_num_threads()))
            thread.start(); thread.join()
            return box[0]
        def run():
            print(torch.get_num_threads())
            with alone():
                print(torch.get_num_threads(), count_in_another_thread())
            print(torch.get_num_threads())
        thread = threading.Thread(target=run); thread.start(); thread.join()
        """
    )
    assert (before, inside, other_inside, after) == ("2", "1", "2", "2")


@needs_teams
def test_tensor_work_alone_starts_no_team():
    alone_added, default_added = _run(
        """
        import torch
        from core.cpu_threads import alone
        torch.set_num_threads(2)  # set explicitly, MKL keeps it process-wide, over a thread's own
        a = torch.randn(512, 512)
        def work():
            torch.rand(2_000_000).mul(2).sum()  # an element-wise op over OpenMP threads
            a @ a  # MKL's own threads
        def work_alone():
            with alone():
                work()
        print(added_by(work_alone), added_by(work))
        """
    )
    assert default_added == "2"  # the thread and its team's other thread: the platform makes teams
    assert alone_added == "1"


@pytest.mark.slow
@needs_teams
def test_preparing_a_request_with_media_starts_no_team(tiny_checkpoint):
    """A request's decoding (a photo, 22.05 kHz sound from a file and from a microphone,
    resampled) and its preparation, on a thread of its own as a server's worker runs them: no
    team. Without `alone` (its calls unavailable) the same thread starts one."""
    counts = {}
    for mode in ("alone", "without"):
        (counts[mode],) = _run(
            f"""
            import io, math
            import numpy as np, soundfile
            from PIL import Image
            import core.cpu_threads
            if {mode!r} == "without":
                core.cpu_threads._thread_settings = lambda: None
            from core.cpu_threads import in_passing_thread
            from engine.engine import Engine
            from engine.loading import LoadOptions
            from engine.request import GenerationRequest, SamplingParams
            from media.audio import load_audio
            from media.images import load_image
            from media.parts import ImagePart, Message, TextPart
            engine = in_passing_thread(lambda: Engine.load(LoadOptions(model={str(tiny_checkpoint)!r}, device="cpu")))
            photo, wav = io.BytesIO(), io.BytesIO()
            Image.new("RGB", (640, 480), (200, 40, 40)).save(photo, "PNG")
            tone = np.sin(np.arange(22050 * 2) * 2 * math.pi * 440 / 22050).astype(np.float32)
            soundfile.write(wav, tone, 22050, format="WAV")
            def work():
                spoken, recorded = load_audio(wav.getvalue()), load_audio((22050, tone))  # a file, a microphone
                parts = [ImagePart(load_image(photo.getvalue())), spoken, recorded, TextPart("What is this?")]
                engine.prepare(GenerationRequest([Message("user", parts)], SamplingParams(max_new_tokens=4)))
            added_by(work)  # the first request starts what a process starts once (the tokenizer's threads)
            print(added_by(work))
            """
        )
    assert counts == {"alone": "1", "without": "2"}


@no_gpu
@pytest.mark.parametrize("kept", [True, False])
def test_a_compile_after_the_compiling_thread_ended_needs_the_kept_device_guard(kept):
    """A compile on a thread that ends (the model-start one), then another: with the device guard
    kept (engine/slot_decoder.py keeps it before compiling) both compile; without, the second
    segfaults (torch 2.11). The control fails once PyTorch keeps its own: then the keeping can go."""
    script = f"""
        import torch
        from core.cpu_threads import in_passing_thread, keep_compile_device_guard
        if {kept}:
            keep_compile_device_guard()
        in_passing_thread(lambda: torch.compile(lambda x: x.sin() * 2, backend="eager")(torch.ones(4)))
        torch.compile(lambda x: x.cos() + 1, backend="eager")(torch.ones(4))  # the fake tensors' device guard
        print("compiled twice")
        """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if kept:
        assert (out.returncode, out.stdout.strip()) == (0, "compiled twice"), out.stderr[-3000:]
    else:
        assert out.returncode == -signal.SIGSEGV, out.stderr[-3000:]


@pytest.mark.slow  # a cold compile of the decode step (one bucket), ~40 s on 2 cores
@no_gpu
def test_a_compile_after_a_compiled_engine_started_is_safe(tiny_checkpoint, compile_folder):
    """open_engine compiles the decode step on a thread that ends; a compile after it (another
    engine's in the CLI's tests, a small function's here) ran into the freed device guard."""
    settings = {"decode": "compiled", "max_batch": 1, "static_cache_rows": 1, "compile_cache": str(compile_folder)}
    (mode, after) = _run(
        f"""
        import torch
        from core.settings import Settings
        from engine import backends
        engine = backends.open_engine(Settings.from_env(model={str(tiny_checkpoint)!r}, **{settings!r}))
        print(engine.decode_mode)
        engine.close()
        torch.compile(lambda x: x.cos() + 1, backend="eager")(torch.ones(4))
        print("compiled")
        """
    )
    assert (mode, after) == ("compiled", "compiled")


def test_in_passing_thread_returns_or_raises_what_start_did():
    main = threading.current_thread()
    assert in_passing_thread(lambda: threading.current_thread()) is not main

    def fails():
        raise ValueError("no such checkpoint")

    with pytest.raises(ValueError, match="no such checkpoint"):
        in_passing_thread(fails)


def test_the_engine_starts_on_a_thread_that_ends(tiny_checkpoint, monkeypatch):
    """open_engine (every entry point's) loads, compiles and self-checks off the calling thread;
    but for ZeroGPU (`move_to`) on it: the `spaces` package's CUDA stand-in is a torch function
    mode, which answers only the thread that imported it (app/zero_gpu.py)."""
    from engine import loading

    threads = []
    load_model = loading.load_model

    def recorded(options):
        threads.append(threading.current_thread())
        return load_model(options)

    monkeypatch.setattr(loading, "load_model", recorded)
    settings = Settings.from_env(model=str(tiny_checkpoint), max_batch=2)
    for move_to in (None, "cpu"):
        backends.open_engine(settings, move_to=move_to).close()
    assert threads[0] is not threading.current_thread() and not threads[0].is_alive()
    assert threads[1] is threading.current_thread()
