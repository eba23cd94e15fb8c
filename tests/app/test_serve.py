"""`phi4mm serve` on 127.0.0.1 with the tiny checkpoint: /health answers and the chat endpoint
streams answers to the official gradio_client (text and a photo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from gradio_client import Client, handle_file

from tests.inputs import make_photo

PHI4MM = os.path.join(os.path.dirname(sys.executable), "phi4mm")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([PHI4MM, "serve", "--model", str(tiny_checkpoint), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not start:\n" + log.read_text())
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_health(server):
    import json

    body = json.load(urllib.request.urlopen(server + "/health", timeout=5))
    assert body["status"] == "ok" and body["adapters"] == ["vision", "speech"]


def test_chat_text_and_photo(server, tmp_path):
    client = Client(server + "/", verbose=False)
    answer = client.predict({"text": "Hello, how are you?", "files": []}, api_name="/chat")
    assert isinstance(answer, str) and answer.strip()
    make_photo().save(tmp_path / "photo.png")
    answer = client.predict({"text": "Describe the image.", "files": [handle_file(str(tmp_path / "photo.png"))]},
                            api_name="/chat")
    assert isinstance(answer, str) and not answer.startswith("⚠️")
