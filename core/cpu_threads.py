"""One team of CPU threads in the process: the decode loop's. On a CPU, a thread that prepares a
request (an HTTP worker, Gradio's) does its few tensor operations alone; media resampling does
everywhere; the model starts on a thread that ends (engine/backends.py, but not under ZeroGPU).

Why: PyTorch's CPU kernels and MKL run on OpenMP (GNU libgomp in PyTorch's wheels), and each
Python thread that enters a parallel region gets a team of its own, whose threads live as long
as it does. A server preparing requests on its worker threads had sixteen teams after sixteen
streams (31 threads in the process). Once libgomp manages more threads than there are CPUs, its
idle threads spin only briefly before they sleep (GOMP_SPINCOUNT in libgomp's manual), so each
parallel operation of the decode loop first wakes one: a 16-row decode step of the tiny
checkpoint took 12.95 ms with eight idle teams alive against 8.60 ms with none, and 8.57 when
those threads had prepared their work `alone` (bench/cpu_threads.py, this 2-core CPU). A
request's own tensor work (a photo's resize, a spectrogram) is small beside that.

A thread that ends has one more hazard, torch.compile's: `keep_compile_device_guard`.
"""

from __future__ import annotations

import ctypes
import os
import threading
from contextlib import contextmanager
from functools import cache
from typing import Callable, TypeVar

T = TypeVar("T")


@cache
def _thread_settings():
    """OpenMP's and MKL's calls for the calling thread's own thread count, in the copy of PyTorch's
    CPU library already loaded -> (get, set, set MKL's or None) or None where there is none to be
    found (another build or platform: there this does nothing)."""
    import torch  # noqa: F401 - loaded first: the library is looked for among those loaded (and cached)

    try:  # RTLD_NOLOAD: the loaded copy or nothing, never a second one; its dependencies' symbols too
        torch_cpu = ctypes.CDLL("libtorch_cpu.so", mode=os.RTLD_NOLOAD)
        get_threads, set_threads = torch_cpu.omp_get_max_threads, torch_cpu.omp_set_num_threads
    except (OSError, AttributeError):
        return None
    # MKL's C call, where PyTorch was built with MKL (its lower-case name is the Fortran one, which
    # takes a pointer); it returns the thread's previous own count (0: none, MKL's process-wide one)
    set_mkl_threads = getattr(torch_cpu, "MKL_Set_Num_Threads_Local", None)
    return get_threads, set_threads, set_mkl_threads


@contextmanager
def alone():
    """Inside, the calling thread's tensor operations run on it alone, and it starts no team of
    threads; its own counts come back after (the thread may decode next: the CLI's does)."""
    import torch  # here, not at import: media imports this module and loads torch only when it must

    calls = _thread_settings()
    if calls is None:
        yield
        return
    get_threads, set_threads, set_mkl_threads = calls
    torch.get_num_threads()  # PyTorch sets a thread's count on its first use: first, so it cannot undo ours
    before = get_threads()
    set_threads(1)
    mkl_before = set_mkl_threads(1) if set_mkl_threads else None
    try:
        yield
    finally:
        set_threads(before)
        if set_mkl_threads:
            set_mkl_threads(mkl_before)


@cache
def keep_compile_device_guard() -> None:
    """Makes torch.compile safe on a thread that ends; call before compiling. Without a GPU, the
    first compile sets PyTorch's CUDA device guard to a stand-in owned by the compiling thread (a
    C++ thread_local in c10's DeviceGuardImplInterface.cpp, `ensureCUDADeviceGuardSet`, which
    FakeTensorMode calls); when that thread ends, the stand-in is freed but stays registered, and
    the process's next compile segfaults (torch 2.11: a compile on the model-start thread, then a
    second engine's; tests/engine/test_cpu_threads.py). So the stand-in is made here, on a thread
    kept for the process's life, that does nothing else; a later call finds it set and keeps it.
    Before the process's first compile, then: after one on a thread that has ended it is too late."""
    import torch

    ensure_guard = getattr(torch._C, "_ensureCUDADeviceGuardSet", None)  # private: absent, nothing to keep
    # only where FakeTensorMode would make one (its `avoid_device_init`): never over a GPU's own
    # guard, nor under ZeroGPU, whose CUDA stand-in says a GPU is there (app/zero_gpu.py)
    if ensure_guard is None or torch.cuda.is_available():
        return
    ready = threading.Event()

    def keep() -> None:
        try:
            ensure_guard()
        finally:  # failed: the compile goes on as it would have (and nobody waits forever)
            ready.set()
        threading.Event().wait()  # forever: the stand-in lives as long as this thread

    threading.Thread(target=keep, name="torch-device-guard", daemon=True).start()
    ready.wait()


def in_passing_thread(start: Callable[[], T]) -> T:
    """start() run on a thread that ends with it -> its result (or its exception, raised here).
    For loading and starting the model: the team its tensor work starts ends with that thread, so
    the decode loop's is left the only one (an idle team kept by the main thread slows it as the
    teams above do)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append((True, start()))
        except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
            outcome.append((False, err))

    thread = threading.Thread(target=run, name="model-start", daemon=True)  # Ctrl-C still ends the process
    thread.start()
    thread.join()
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value
