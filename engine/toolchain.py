"""Whether torch.compile can build native code here. It compiles while it runs: on a GPU, Triton
compiles a small C launcher (which includes Python.h) for each kernel with the C compiler it finds
(CC, else gcc, else clang: triton/runtime/build.py); on a CPU, inductor compiles C++ with the
compiler torch finds (CXX, else g++). Without one, or without Python's headers (a slim Docker
image), every compiled step fails at its first call. Checked before the compiled path is chosen,
by building a two-line extension the same way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import torch

PROBE = "#include <stdlib.h>\n#include <Python.h>\n"


def compile_problem(device: torch.device) -> str | None:
    """Why torch.compile cannot build its kernels on `device` here (a short reason), or None."""
    if device.type == "cuda":
        compiler, suffix, missing = c_compiler(), ".c", "no C compiler for Triton: install gcc and libc6-dev, or set CC"
    else:
        compiler, suffix, missing = cpp_compiler(), ".cpp", "no C++ compiler for torch.compile: install g++, or set CXX"
    if compiler is None:
        return missing
    include = python_include()
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return "no Python headers (Python.h) for torch.compile: install python3-dev"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / f"probe{suffix}"
        source.write_text(PROBE)
        command = [compiler, str(source), "-shared", "-fPIC", f"-I{include}", "-o", str(Path(folder) / "probe.so")]
        try:
            built = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except OSError as err:
            return f"the compiler {compiler} does not run: {err.strerror}"
    if built.returncode:
        said = (built.stderr.strip().splitlines() or ["no message"])[0]
        return f"the compiler {os.path.basename(compiler)} cannot build an extension: {said}"
    return None


def c_compiler() -> str | None:
    """The compiler Triton would use, by its own rule."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")


def cpp_compiler() -> str | None:
    """The compiler inductor would use on a CPU (torch's own search)."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        return get_cpp_compiler()
    except Exception:  # torch raises InvalidCxxCompiler when it finds none
        return None


def python_include() -> str:
    """Where Triton looks for Python.h (Debian's posix_local scheme maps to posix_prefix there too)."""
    scheme = sysconfig.get_default_scheme()
    return sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"]
