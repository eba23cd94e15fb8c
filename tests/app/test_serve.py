"""`phi4mm serve` on 127.0.0.1: /health answers and reports the model's adapters; its start-up."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_health(web_server):
    body = json.load(urllib.request.urlopen(web_server + "/health", timeout=5))
    assert body["status"] == "ok" and body["adapters"] == ["vision", "speech"] and body["device"] == "cpu"


def test_serve_says_where_it_is_and_when_it_is_ready(web_server, web_server_log):
    """Without --verbose it used to print nothing at all. (The shared server, started with a key.)"""
    url, lines = web_server, web_server_log.read_text().splitlines()
    said = [line for line in lines if line.startswith("phi4mm: ")]
    assert said[0].startswith("phi4mm: loading ") and said[1].startswith("phi4mm: ready in ")
    assert f"phi4mm: web app:  {url}/" in said and any(line.startswith(f"phi4mm: API:      {url}/v1") for line in said)
    assert any("API key" in line for line in said)


@pytest.mark.slow  # a fresh process importing torch, transformers and Gradio
def test_start_up_freezes_what_it_imports_and_leaves_the_collector_on():
    """app/server.py `import_frozen`: the collector walked the imports' objects ten times while they
    were made; now once. Run as a server runs it, in a fresh process."""
    code = (
        "import gc, app.server, core.settings; app.server.import_frozen(core.settings.Settings()); "
        "print(gc.isenabled(), gc.get_freeze_count(), gc.get_stats()[2]['collections'])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    enabled, frozen, full_collections = run.stdout.split()[-3:]
    assert enabled == "True" and int(frozen) > 300_000, run.stdout  # about 600,000
    assert int(full_collections) <= 2, run.stdout  # its own, and one while Python started at most
