"""`phi4mm download` against a small stand-in for the Hugging Face Hub on 127.0.0.1 (HF_ENDPOINT):
the size line first, the hub's per-file bars, and a second run that downloads nothing again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FILES = {"config.json": b'{"model_type": "phi4_multimodal"}', "model.safetensors": b"w" * 3_000_000}
COMMIT = "c" * 40


class FakeHub(BaseHTTPRequestHandler):
    """Just the routes snapshot_download uses: the repo's info, its file tree and each file."""

    gets: list[str] = []

    def log_message(self, *args):
        pass

    def _send(self, body: bytes, headers: dict, with_body: bool = True):
        self.send_response(200)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def _file(self, with_body: bool):
        name = self.path.split("/resolve/", 1)[1].split("/", 1)[1]
        data = FILES[name]
        if with_body:
            self.gets.append(name)
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        self._send(data, headers, with_body)

    def do_HEAD(self):
        self._file(False)

    def do_GET(self):
        if "/resolve/" in self.path:
            return self._file(True)
        if "/tree/" in self.path:
            info = [
                {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                for n, d in FILES.items()
            ]
        else:
            info = {"id": "someone/model", "sha": COMMIT, "siblings": [{"rfilename": n} for n in FILES]}
        self._send(json.dumps(info).encode(), {"Content-Type": "application/json"})


@pytest.fixture
def hub():
    FakeHub.gets = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_shows_the_size_then_a_bar_per_file_and_does_not_fetch_twice(hub, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub}
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "app.cli", "download", "--model", "someone/model"]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    size = "phi4mm: someone/model: 2 files, 3.0 MB; 3.0 MB to download"
    assert first.stderr.startswith(size), first.stderr  # the size before any bar
    assert "Fetching 2 files" in first.stderr and "100%" in first.stderr  # the hub's bars, not silenced
    snapshot = first.stdout.strip()
    assert open(os.path.join(snapshot, "model.safetensors"), "rb").read() == FILES["model.safetensors"]
    assert sorted(FakeHub.gets) == sorted(FILES)

    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0 and "0.0 MB to download (3.0 MB already here)" in second.stderr
    assert sorted(FakeHub.gets) == sorted(FILES)  # nothing fetched again


def test_serve_names_a_download_only_when_there_is_one(tiny_checkpoint):
    """`serve --model ./local` used to say that the first run downloads 12 GB."""
    from app.launch import _first_run_note
    from core.settings import Settings

    assert _first_run_note(Settings(model=str(tiny_checkpoint), device="cpu")) == ""
    assert "12 GB" in _first_run_note(Settings(model="someone/model", device="cpu"))  # in no cache
