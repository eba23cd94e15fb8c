"""The Spaces entry point on ZeroGPU, started as Spaces starts it (`python space_app.py`), against a
stand-in `spaces` package as strict as ZeroGPU (tests/spaces_stand_in/spaces.py): it must be
imported before torch, its start-up work runs at the first `launch()`, and a model forward pass
outside a running `@spaces.GPU` call fails. Every endpoint must work, twice in a row, with nothing
refused (a batching thread started by the first call had no GPU in the second); each call asks for
a duration from its own input, and a recording too long for one call is refused before it starts."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from gradio_client import Client, handle_file

from tooling.server import server_process

pytestmark = pytest.mark.slow  # a Space (with the spaces stand-in) of its own

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "ui" / "examples"
LIMIT_S = 40  # a call may ask for this much at most (PHI4MM_ZERO_GPU_MAX_S)


@pytest.fixture(scope="module")
def zero_gpu_space(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("zero-gpu")
    report = folder / "report.json"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPACES_ZERO_GPU", "true")
        env.setenv("SPACES_STAND_IN_REPORT", str(report))
        env.setenv("PYTHONPATH", str(ROOT / "tests" / "spaces_stand_in"))
        command = (sys.executable, "space_app.py")
        settings = {"host": "127.0.0.1", "zero_gpu_max_s": str(LIMIT_S), "max_new_tokens": "64"}
        with server_process(tiny_checkpoint, folder / "space.log", command, cwd=ROOT, **settings) as (url, _):
            yield url, report


def test_every_endpoint_runs_inside_spaces_gpu_calls_that_ask_for_their_time(zero_gpu_space, tmp_path):
    url, report = zero_gpu_space
    client, wav = Client(url + "/", verbose=False), handle_file(str(EXAMPLES / "question.wav"))
    chats = [client.predict({"text": "Hi", "files": []}, "", 16, api_name="/chat")[0] for _ in range(2)]
    answers = chats + [client.predict(wav, api_name="/transcribe")[0], client.predict(wav, api_name="/summarize")[0]]
    answers += [client.predict(handle_file(str(EXAMPLES / "sunset.png")), wav, "", api_name="/photo_by_voice")]
    assert all(answer and "⚠️" not in answer for answer in answers), answers

    soundfile.write(tmp_path / "meeting.wav", np.zeros(5 * 60 * 16000, np.float32), 16000)
    with pytest.raises(Exception, match="This recording is 5 minutes long; on this Space one GPU call covers about"):
        client.predict(handle_file(str(tmp_path / "meeting.wav")), api_name="/summarize")

    seen = json.loads(report.read_text())
    assert seen["launched"] and seen["refused"] == []
    asked = dict(seen["durations"])  # the last call of each event
    assert [name for name, _ in seen["durations"]] == ["chat", "chat", "transcribe", "summarize", "photo_by_voice"]
    assert asked["chat"] < asked["photo_by_voice"] <= LIMIT_S  # 16 tokens asked for, against the default 64
    assert asked["transcribe"] > asked["photo_by_voice"]  # it writes out what it hears, twice with a translation
    health = json.load(urllib.request.urlopen(url + "/health", timeout=10))
    assert health["decode"] == "dynamic"
