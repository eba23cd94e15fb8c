"""torch.compile builds native code while it runs (Triton's C launchers on a GPU, C++ on a CPU).
Where it cannot (a slim image with no compiler or no Python headers), the compiled path would fail
at its first step: the engine checks first, decodes dynamically, and says why (once in the log,
and on `phi4mm doctor`'s decode line). The check builds a real extension with the real compiler."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from engine import toolchain
from engine.toolchain import compile_problem

PHI4MM = os.path.join(os.path.dirname(sys.executable), "phi4mm")
CUDA = torch.device("cuda")  # only the toolchain is checked: no GPU needed


def test_this_machine_can_build_for_both(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    assert compile_problem(CUDA) is None and compile_problem(torch.device("cpu")) is None


def test_each_missing_piece_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/nonexistent/cc")  # Triton's own variable, read as Triton reads it
    assert compile_problem(CUDA) == "the compiler /nonexistent/cc does not run: No such file or directory"
    monkeypatch.setenv("CC", "false")
    assert compile_problem(CUDA).startswith("the compiler false cannot build an extension")
    monkeypatch.delenv("CC")
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc, no clang
    assert compile_problem(CUDA) == "no C compiler for Triton: install gcc and libc6-dev, or set CC"
    monkeypatch.undo()
    monkeypatch.setattr(toolchain, "python_include", lambda: str(tmp_path))  # no Python.h there
    assert compile_problem(CUDA) == "no Python headers (Python.h) for torch.compile: install python3-dev"


@pytest.mark.slow  # phi4mm doctor as a subprocess
def test_without_a_compiler_the_compiled_path_falls_back_and_doctor_says_why(tiny_checkpoint):
    env = {**os.environ, "CXX": "/nonexistent/c++", "HF_HUB_OFFLINE": "1"}  # inductor's variable on a CPU
    doctor = subprocess.run(
        [PHI4MM, "doctor", "--model", str(tiny_checkpoint), "--decode", "compiled"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    said = doctor.stdout + doctor.stderr
    assert doctor.returncode == 0, said
    reason = "no C++ compiler for torch.compile: install g++, or set CXX"
    assert f"decode: dynamic: the fast path is off (compiled: {reason})" in doctor.stdout
    assert said.count(f"the compiled decode path cannot run here ({reason})") == 1  # logged once
