"""`phi4mm serve` on 127.0.0.1: /health answers and reports the model's adapters."""

from __future__ import annotations

import json
import urllib.request


def test_health(web_server):
    body = json.load(urllib.request.urlopen(web_server + "/health", timeout=5))
    assert body["status"] == "ok" and body["adapters"] == ["vision", "speech"] and body["device"] == "cpu"
