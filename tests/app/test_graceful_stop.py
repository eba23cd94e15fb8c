"""SIGTERM under load (what `docker stop` sends): open streams end with a clear "shutting down"
event and [DONE], and the server exits well inside Docker's 10 s grace; a second signal exits at once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tooling.server import server_process

pytestmark = pytest.mark.slow  # a server of its own per signal count

STREAMS = 6


def stream_until_end(url: str, started: threading.Barrier, out: list) -> None:
    body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 3000, "stream": True}
    lines = []
    try:
        with httpx.Client(timeout=30) as client, client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                lines.append(line)
                if len(lines) == 4:
                    started.wait(30)
    except httpx.HTTPError as err:
        lines.append(f"transport error: {err}")
    out.append(lines)


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_under_load_ends_streams_clearly_and_exits_in_time(tiny_checkpoint, tmp_path, signals):
    with server_process(tiny_checkpoint, tmp_path / "serve.log") as (url, proc):
        uploaded = httpx.post(url + "/gradio_api/upload", files={"files": ("a.txt", b"a")}, timeout=30).json()[0]
        folder = Path(uploaded).parents[1]  # the server's private folder: <folder>/<hash>/a.txt
        assert folder.name.startswith("phi4mm-serve-") and folder.is_dir()
        started, results = threading.Barrier(STREAMS + 1), []
        threads = [threading.Thread(target=stream_until_end, args=(url, started, results)) for _ in range(STREAMS)]
        for t in threads:
            t.start()
        started.wait(60)  # every stream is generating
        stopped_at = time.monotonic()
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        code = proc.wait(timeout=10)
        took = time.monotonic() - stopped_at
        for t in threads:
            t.join(10)
    assert took < (2 if signals == 2 else 9), took
    assert len(results) == STREAMS
    if signals == 1:
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
        for lines in results:
            assert any("shutting down" in line for line in lines), lines[-3:]
            assert lines[-1] == "data: [DONE]" or lines[-2:] == ["data: [DONE]", ""], lines[-3:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=2)  # it really stopped listening
    assert not folder.exists()  # the server's files go with it, even at a second signal
