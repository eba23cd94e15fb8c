"""No Docker engine runs here, so the Dockerfile is checked statically: the same pins as
pyproject.toml, a CUDA runtime that matches the torch wheel, a non-root user, a model-cache
volume, a health check on /health, and `phi4mm serve` as the command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import tomllib
import torch

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
