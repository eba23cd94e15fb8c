"""The CLI's smaller promises: a flag error before any heavy import, several audio clips, the
download command's offline answers and its size line."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from app.cli import main

PYTHON = [sys.executable, "-m", "app.cli"]
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def test_the_parser_imports_no_torch_so_flag_errors_are_instant():
    probe = (
        "import sys; from app.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['ask', '--bogus'])\nexcept SystemExit: pass\n"
        "import app.cli_common, app.cli_download\n"
        "print(sorted(m for m in ('torch', 'transformers', 'gradio', 'numpy') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=ENV, timeout=60)
    assert run.stdout.strip() == "[]", run.stdout + run.stderr
    run = subprocess.run([*PYTHON, "ask"], capture_output=True, text=True, env=ENV, timeout=60)
    assert run.returncode == 2 and "ask needs a question" in run.stderr


def test_audio_given_twice_takes_both_clips(tiny_checkpoint, tmp_path, capsys):
    import soundfile as sf

    from tooling.inputs import make_tone

    sf.write(tmp_path / "tone.wav", make_tone(seconds=1.5, rate=16000), 16000)
    prompts = []
    for clips in (1, 2):
        flags = ["--audio", str(tmp_path / "tone.wav")] * clips
        assert main(["ask", "--model", str(tiny_checkpoint), "--max-new-tokens", "2", "--verbose", *flags, "?"]) == 0
        prompts.append(int(capsys.readouterr().err.split("prompt_tokens=")[1].split()[0]))
    assert prompts[1] > prompts[0] + 10  # the second clip's tokens are in the prompt, not in place of the first


def test_download_of_a_local_folder_or_offline_says_so_in_one_line(tiny_checkpoint, tmp_path):
    env = {**ENV, "HF_HOME": str(tmp_path / "hf")}
    cases = [
        (["--model", str(tiny_checkpoint)], {}, 0, "is a local folder: nothing to download"),
        (["--model", str(tmp_path / "nowhere")], {}, 2, "There is no folder"),
        ([], {"HF_HUB_OFFLINE": "1"}, 2, "offline mode is on (HF_HUB_OFFLINE)"),
    ]
    for flags, extra, code, message in cases:
        run = subprocess.run(
            [*PYTHON, "download", *flags], capture_output=True, text=True, env={**env, **extra}, timeout=60
        )
        assert run.returncode == code and message in run.stderr, run.stderr
        assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "sizes, cached, line",
    [
        ([4_000_000_000, 1_000_000_000, 2_000], [False, True, False], "3 files, 5.0 GB; 4.0 GB to download (1.0 GB"),
        ([20_000_000], [False], "1 files, 20.0 MB; 20.0 MB to download"),
    ],
)
def test_the_size_line_comes_from_the_hubs_dry_run(sizes, cached, line):
    from app.cli_download import size_line

    files = [SimpleNamespace(file_size=s, will_download=not c) for s, c in zip(sizes, cached)]
    assert size_line("m", files).startswith(f"m: {line}")


@pytest.mark.slow  # a subprocess per command
def test_torchs_cuda_home_warning_is_silenced_where_commands_run():
    """torch.utils.cpp_extension warns "No CUDA runtime is found, using CUDA_HOME" on import when
    CUDA_HOME is set and no GPU is seen (summarize and doctor showed it)."""
    probe = "from app.cli_common import quiet_libraries; {}import torch.utils.cpp_extension"
    env = {**ENV, "CUDA_HOME": "/tmp"}
    for quiet, shown in (("", True), ("quiet_libraries(False); ", False)):
        run = subprocess.run(
            [sys.executable, "-c", probe.format(quiet)], capture_output=True, text=True, env=env, timeout=120
        )
        assert ("No CUDA runtime is found" in run.stderr) == shown, run.stderr
