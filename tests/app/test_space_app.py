"""The Hugging Face Spaces entry point, started as Spaces starts it (`python space_app.py` in the
repository, settings from PHI4MM_* variables, SPACE_HOST set by Spaces): it gets through Gradio's
`launch()` with its options (the theme used to crash it), and serves what `phi4mm serve` serves
behind the same front door: the page, /health, /v1 and every public Gradio endpoint, all behind
the key but /health, and only for known host names."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tooling.server import idle_activity, server_process

pytestmark = pytest.mark.slow  # a Space of its own

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "ui" / "examples"
KEY, SPACE_HOST = "space-key", "someone-phi4mm.hf.space"
PHOTO, SPEECH = handle_file(str(EXAMPLES / "sunset.png")), handle_file(str(EXAMPLES / "question.wav"))
# Each public endpoint with valid minimal inputs (the rest take their defaults). A new endpoint
# fails the test until it is added here.
CALLS = {
    "/chat": ({"text": "Hi", "files": []}, "", 16),
    "/photo_by_voice": (PHOTO, SPEECH, ""),
    "/transcribe": (SPEECH,),
    "/summarize": (SPEECH,),
    "/stop_meeting": (),
}


@pytest.fixture(scope="module")
def space_process(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("space")
    # Spaces listens on 0.0.0.0; the test keeps to loopback, which also shows PHI4MM_HOST is read
    settings = {"host": "127.0.0.1", "api_key": KEY, "max_new_tokens": "64", "tmp": str(folder)}
    command = (sys.executable, "space_app.py")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPACE_HOST", SPACE_HOST)  # as Spaces sets it
        with server_process(tiny_checkpoint, folder / "space.log", command, cwd=ROOT, **settings) as (url, proc):
            yield url, proc
    # stopped as Spaces and Docker stop it (SIGTERM): its private folder (uploads, copies) is gone
    assert [path.name for path in folder.iterdir()] == ["space.log"]


@pytest.fixture(scope="module")
def space(space_process):
    return space_process[0]


def get(url: str, key: str | None = KEY, host: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(url, headers=headers | ({"Host": host} if host else {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_the_page_health_and_the_api_behind_the_front_door(space):
    status, page = get(space + "/")
    assert status == 200 and b"<!doctype html>" in page.lower()
    status, health = get(space + "/health", key=None)  # open, as with `phi4mm serve`
    assert status == 200 and json.loads(health)["status"] == "ok"
    assert get(space + "/v1/models", key=None)[0] == 401
    assert get(space + "/v1/models", key="wrong")[0] == 401
    status, models = get(space + "/v1/models")
    assert status == 200 and "speech" in {model["id"] for model in json.loads(models)["data"]}
    assert get(space + "/health", key=None, host=SPACE_HOST)[0] == 200  # the Space's own name
    assert get(space + "/health", key=None, host="attacker.example")[0] == 403
    assert get(space + "/gradio_api/run/chat")[0] == 404  # the route allowlist


def test_chat_completions(space):
    body = {"model": "phi4mm", "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]}
    request = urllib.request.Request(
        space + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert answer["choices"][0]["message"]["content"] and answer["usage"]["completion_tokens"] > 0


def test_every_public_gradio_endpoint(space):
    with pytest.raises(ValueError):  # gradio_client without the key does not get in
        Client(space + "/", verbose=False)
    client = Client(space + "/", verbose=False, headers={"Authorization": f"Bearer {KEY}"})
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == set(CALLS)
    for name, inputs in CALLS.items():
        result = client.predict(*inputs, api_name=name)
        if name != "/stop_meeting":
            first = result[0] if isinstance(result, (list, tuple)) else result
            assert first and "⚠️" not in first, (name, result)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts wake-ups in /proc")
def test_the_space_rests_when_idle(space_process):
    """Its Gradio queue polls as calmly as `phi4mm serve`'s (tests/api/test_stream_checks.py): ~80
    wake-ups a second, 730-880 at Gradio's own settings."""
    wakes, busy = idle_activity(space_process[1].pid)
    assert wakes < 150 and busy < 0.05, (wakes, busy)


def test_the_theme_compares_with_gradios_own_and_keeps_the_system_fonts():
    """`launch()` compares the theme with Gradio's built-in ones (for its usage report, which the
    app turns off, so the server test above no longer meets it); fonts given as strings crashed it."""
    from gradio.utils import BUILT_IN_THEMES

    from ui.app import THEME

    assert not any(THEME.to_dict() == theme.to_dict() for theme in BUILT_IN_THEMES.values())
    assert "--font: system-ui, Segoe UI, Roboto, sans-serif;" in THEME._get_theme_css()
