"""No Docker engine runs here, so the Dockerfile is checked statically: the same pins as
pyproject.toml, a CUDA runtime that matches the torch wheel, what Triton needs at run time, a
non-root user, a model-cache volume, a health check on /health, and `phi4mm serve` as the command;
and its install steps run in a clean environment, from a folder holding what its COPY lines copy."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import tomllib
import torch

from tooling.clean_venv import clean_venv, isolation, pip, run

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.\-]*)==([A-Za-z0-9_.+\-]+)")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_pins_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(PIN.fullmatch(d.split(";")[0].strip()).groups() for d in project["dependencies"])
    installed = {}
    for kind, args in instructions():
        if kind == "RUN" and "pip install" in args:
            installed.update(PIN.findall(args))
    assert installed == wanted


def test_cuda_runtime_base_matches_the_torch_wheel():
    base = [args for kind, args in instructions() if kind == "FROM"]
    assert len(base) == 1
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(?:cudnn-)?runtime-ubuntu[\d.]+", base[0])
    assert match, base[0]
    assert torch.version.cuda.split(".")[:2] == [match[1], match[2]]  # e.g. 13.0 for torch 2.11.0's wheels


def test_non_root_user_model_volume_healthcheck_and_command():
    steps = instructions()
    kinds = [kind for kind, _ in steps]
    users = [args for kind, args in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, (kind, args) in enumerate(steps) if kind == "RUN" and "pip" in args)
    env = " ".join(args for kind, args in steps if kind == "ENV")
    cache = re.search(r"HF_HOME=(\S+)", env)[1]
    assert cache in json.loads(next(args for kind, args in steps if kind == "VOLUME"))
    assert "PHI4MM_HOST=0.0.0.0" in env  # loopback inside a container would be unreachable
    health = next(args for kind, args in steps if kind == "HEALTHCHECK")
    assert "/health" in health and "--start-period" in health
    assert json.loads(next(args for kind, args in steps if kind == "CMD"))[:2] == ["phi4mm", "serve"]


def test_every_package_is_copied_into_the_image():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {args.split()[0] for kind, args in instructions() if kind == "COPY"}
    assert {name.rstrip("*") for name in include} <= copied


def test_what_triton_needs_at_run_time_is_installed():
    """A C compiler with the C library's headers, and Python's headers (engine/toolchain.py)."""
    apt = " ".join(args for kind, args in instructions() if kind == "RUN" and "apt-get install" in args).split()
    assert {"gcc", "libc6-dev", "python3-dev"} <= set(apt)


def copied_tree(folder: Path) -> Path:
    """A folder holding what the COPY lines copy, as Docker lays it out under WORKDIR (less what
    .dockerignore keeps out of the build context: caches and build leftovers)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for kind, args in instructions():
        if kind != "COPY":
            continue
        *sources, dest = args.split()
        for source in sources:
            target = folder / dest / source if len(sources) > 1 or dest.endswith("/") else folder / dest
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=ignore)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    return folder


@pytest.mark.slow  # a clean virtual environment installed
def test_the_install_steps_work_in_a_clean_environment(tmp_path):
    """The dependency line resolves, offline, together with what pyproject asks for (a pin that
    differs is a conflict); `pip install --no-deps .` installs the app from the copied files alone,
    with its examples."""
    work = copied_tree(tmp_path / "opt-phi4mm")
    python = clean_venv(tmp_path / "venv")
    steps = [args.split("pip install", 1)[1].split() for kind, args in instructions() if "pip install" in args]
    assert steps[-1] == ["--no-deps", "."] and len(steps) == 2
    wanted = tomllib.loads((work / "pyproject.toml").read_text())["project"]["dependencies"]
    pip(python, "install", "--dry-run", "--no-index", *steps[0], *wanted)  # one resolution, no conflict
    pip(python, "install", *isolation(), *[str(work) if arg == "." else arg for arg in steps[-1]])  # WORKDIR's "."
    code = "import app.cli, ui.chat_tab as t; print(app.cli.__file__, *sorted(p.name for p in t.EXAMPLES.iterdir()))"
    app_file, *examples = run(python, "-c", code, cwd=tmp_path).split()
    assert app_file.startswith(str(tmp_path / "venv")) and {"sunset.png", "question.wav"} <= set(examples)
