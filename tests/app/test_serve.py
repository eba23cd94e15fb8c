"""`phi4mm serve` on 127.0.0.1: /health answers and reports the model's adapters."""

from __future__ import annotations

import json
import urllib.request

import pytest


def test_health(web_server):
    body = json.load(urllib.request.urlopen(web_server + "/health", timeout=5))
    assert body["status"] == "ok" and body["adapters"] == ["vision", "speech"] and body["device"] == "cpu"


@pytest.mark.slow  # a server of its own
def test_serve_says_where_it_is_and_when_it_is_ready(tiny_checkpoint, tmp_path):
    """Without --verbose it used to print nothing at all."""
    from tooling.server import running_server

    log = tmp_path / "serve.log"
    with running_server(tiny_checkpoint, log, api_key="k") as url:
        lines = log.read_text().splitlines()
    said = [line for line in lines if line.startswith("phi4mm: ")]
    assert said[0].startswith("phi4mm: loading ") and said[1].startswith("phi4mm: ready in ")
    assert f"phi4mm: web app:  {url}/" in said and any(line.startswith(f"phi4mm: API:      {url}/v1") for line in said)
    assert any("API key" in line for line in said)
