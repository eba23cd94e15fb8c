"""A real `phi4mm serve` on 127.0.0.1 for end-to-end tests, started and stopped by the tests."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PHI4MM = os.path.join(os.path.dirname(sys.executable), "phi4mm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(checkpoint: Path, log_path: Path, **env_settings: str):
    """Yields the base URL; `env_settings` become PHI4MM_* variables (e.g. MAX_UPLOAD_MB="1")."""
    with server_process(checkpoint, log_path, **env_settings) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(checkpoint: Path, log_path: Path, command=(PHI4MM, "serve"), cwd=None, **env_settings: str):
    """Yields (base URL, the server's process), for tests that signal it. `command` (run in `cwd`)
    is `phi4mm serve` or another way in (space_app.py, another install's `phi4mm`): model and port
    go to it as PHI4MM_* variables, which every one of them reads."""
    port = free_port()
    settings = {"model": str(checkpoint), "port": str(port), **env_settings}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **{f"PHI4MM_{k.upper()}": v for k, v in settings.items()}}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("server did not start:\n" + log_path.read_text()) from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def idle_activity(pid: int, seconds: float = 2.0) -> tuple[float, float]:
    """What the process does over `seconds` (Linux /proc) -> (how often its threads, all of them,
    slept and woke again per second: voluntary context switches; the share of one core it kept
    busy). A process at rest keeps both low; one spinning wakes rarely and burns a core."""

    def now() -> tuple[int, float]:
        switches = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
                status = Path(f"/proc/{pid}/task/{task}/status").read_text()
                switches += int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
        ticks = sum(int(field) for field in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])
        return switches, ticks / os.sysconf("SC_CLK_TCK")

    (switches, cpu), began = now(), time.monotonic()
    time.sleep(seconds)
    (switches_after, cpu_after), took = now(), time.monotonic() - began
    return (switches_after - switches) / took, (cpu_after - cpu) / took
