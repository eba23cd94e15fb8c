"""`phi4mm serve` on 127.0.0.1: /health answers and reports the model's adapters."""

from __future__ import annotations

import json
import urllib.request


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
