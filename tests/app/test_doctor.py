"""`phi4mm doctor` and `phi4mm --version`: offline, a few seconds, a last line `ready` or what is
wrong (with a non-zero exit)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from app.doctor import run_doctor
from core.settings import Settings
from tooling.server import PHI4MM


def doctor(**settings) -> tuple[int, list[str]]:
    lines: list[str] = []
    return run_doctor(Settings(**settings), say=lines.append), lines


def test_version():
    out = subprocess.run([PHI4MM, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("phi4mm ")


@pytest.mark.slow  # phi4mm doctor as a subprocess
def test_a_sound_checkpoint_is_ready_with_its_self_check(tiny_checkpoint):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [PHI4MM, "doctor", "--model", str(tiny_checkpoint), "--decode", "static"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and lines[-1] == "ready", out.stdout + out.stderr
    assert lines[0].startswith("phi4mm ") and "torch 2.11.0" in lines[1] and "transformers 5.23.0" in lines[1]
    assert any(line.startswith("decode: static, self-check passed") for line in lines)


def test_a_model_that_is_not_here_is_not_ready(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, lines = doctor()
    assert code == 1 and "not in the local cache" in " ".join(lines)
    assert lines[-1].startswith("not ready") and "hf download microsoft/Phi-4-multimodal-instruct" in lines[-1]


@pytest.fixture
def copied(tiny_checkpoint, tmp_path):
    return shutil.copytree(tiny_checkpoint, tmp_path / "ckpt")


def test_token_ids_that_disagree_name_the_files(copied):
    config = json.loads((copied / "config.json").read_text())
    config["vision_config"]["image_token_id"] = 7
    (copied / "config.json").write_text(json.dumps(config))
    code, lines = doctor(model=str(copied))
    assert code == 1 and lines[-1].startswith("not ready")
    assert "in tokenizer.json but 7 in config.json" in lines[-1]


def test_a_missing_adapter_is_named(copied):
    shutil.rmtree(copied / "speech-lora")
    code, lines = doctor(model=str(copied))
    assert code == 1 and "the speech adapter folder speech-lora/ is missing" in lines[-1]
