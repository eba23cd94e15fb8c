"""The Host and Origin rules case by case (app/host_origin.py); tests/api/test_local_first.py holds
them on the real server."""

from __future__ import annotations

import pytest

from app.host_origin import HostAndOrigin
from core.settings import Settings

RULES = HostAndOrigin(Settings(allowed_hosts="mybox.example", allowed_origins="https://frontend.example/"))


@pytest.mark.parametrize(
    "origin, host, allowed",
    [
        ("http://127.0.0.1:7860", "127.0.0.1:7860", True),  # the app's own page
        ("http://localhost:7860", "localhost:7860", True),
        ("http://[::1]:7860", "[::1]:7860", True),
        ("https://box.example", "box.example", True),  # behind a proxy on the default port
        ("http://127.0.0.1:8000", "127.0.0.1", False),  # another local port, proxied to the default one
        ("http://127.0.0.1:8000", "127.0.0.1:7860", False),  # another local web app
        ("http://localhost:7860", "127.0.0.1:7860", False),  # same machine, another origin
        ("https://attacker.example", "127.0.0.1:7860", False),
        ("null", "127.0.0.1:7860", False),  # a sandboxed frame or a file: page
        ("file://", "127.0.0.1:7860", False),
        ("http://127.0.0.1:notaport", "127.0.0.1:7860", False),
        ("https://frontend.example", "127.0.0.1:7860", True),  # --allowed-origins
    ],
)
def test_origins(origin, host, allowed):
    assert RULES.origin_allowed(origin, host) is allowed


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("127.0.0.1:7860", True),
        ("[::1]:7860", True),
        ("10.1.2.3", True),
        ("LOCALHOST:7860", True),
        ("localhost.:7860", True),
        ("mybox.example", True),
        ("attacker.example:7860", False),
        ("127.0.0.1.attacker.example", False),
        ("[not an address]", False),
        ("", False),
    ],
)
def test_hosts(host, allowed):
    assert RULES.host_allowed(host) is allowed
