"""The Spaces entry point on ZeroGPU, against a stand-in `spaces` package as strict as ZeroGPU
(tests/spaces_stand_in/spaces.py): a model forward pass outside a running `@spaces.GPU` call
fails. Every endpoint must work, twice in a row, with nothing refused (a batching thread started
by the first call had no GPU in the second)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tooling.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json, sys
sys.path.insert(0, {stand_in!r})
import spaces
from transformers import Phi4MultimodalForCausalLM
spaces.guard_forward(Phi4MultimodalForCausalLM)
import space_app
from gradio_client import Client, handle_file
space_app.demo.launch(server_name="127.0.0.1", server_port={port}, prevent_thread_lock=True, quiet=True)
client, wav = Client("http://127.0.0.1:{port}/", verbose=False), handle_file({wav!r})
answers = [client.predict({{"text": "Hi", "files": []}}, api_name="/chat")[0] for _ in range(2)]
answers += [client.predict(wav, api_name="/transcribe")[0], client.predict(wav, api_name="/summarize")[0]]
answers += [client.predict(handle_file({photo!r}), wav, api_name="/photo_by_voice")]
print(json.dumps({{"refused": spaces.refused, "answers": answers,
                  "batcher": space_app.service.engine.batcher is not None,
                  "decode": space_app.service.engine.decode_mode}}))
space_app.demo.close()
"""


def test_every_endpoint_runs_inside_spaces_gpu_calls(tiny_checkpoint, tmp_path):
    script = SCRIPT.format(
        stand_in=str(ROOT / "tests" / "spaces_stand_in"),
        port=free_port(),
        wav=str(ROOT / "ui" / "examples" / "question.wav"),
        photo=str(ROOT / "ui" / "examples" / "sunset.png"),
    )
    env = {**os.environ, "SPACES_ZERO_GPU": "true", "PHI4MM_MODEL": str(tiny_checkpoint), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(next(line for line in reversed(run.stdout.splitlines()) if line.startswith("{")))
    assert report["refused"] == [] and not report["batcher"] and report["decode"] == "dynamic"
    assert all(answer and "⚠️" not in answer for answer in report["answers"]), report["answers"]
