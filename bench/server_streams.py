"""Concurrency through a real server: `phi4mm serve` on the tiny checkpoint (started here), N
streaming chat requests mixing text, image, audio and image+audio, sent all at once and then one
after another, over HTTP with their media as base64 (decoding included). Also a lone request
against the same engine called directly in this process (no HTTP, no server), the "direct path":
the request the server's service builds (its system prompt too), so the model reads the same
tokens both ways.

Prints, per stream count, the aggregate tokens/s both ways and their ratio (median of the paired
ratios over `--repeats` rounds, alternating), and the lone request's tokens/s through the server
against the direct path (over three times as many rounds: it is the noisier figure). Tokens are
counted from each stream's `usage` (a random model may end early).

    python bench/concurrency.py --server [--streams 1 4 16] [--max-new-tokens 96] [--repeats 5]
"""

from __future__ import annotations

import base64
import io
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import soundfile

from app.service import ConversationService, open_service
from core.settings import Settings
from engine.engine import Engine
from engine.loading import LoadOptions
from engine.request import SamplingParams
from media.limits import SAMPLE_RATE
from media.parts import Message
from tooling.inputs import MODALITIES, make_photo, make_tone
from tooling.server import running_server
from tooling.tiny_checkpoint import write_tiny_checkpoint

KEY = "bench-key"
LONE_ROUNDS_PER_REPEAT = 3


def _data_url(kind: str, data: bytes) -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def _contents() -> dict[str, list[dict]]:
    """The same four kinds as tooling.inputs.MODALITIES, as an OpenAI client sends them."""
    png, wav = io.BytesIO(), io.BytesIO()
    make_photo().save(png, format="PNG")
    soundfile.write(wav, make_tone(), SAMPLE_RATE, format="WAV")
    image = {"type": "image_url", "image_url": {"url": _data_url("image/png", png.getvalue())}}
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav.getvalue()).decode(), "format": "wav"}}
    return {
        "text": [{"type": "text", "text": "Hello, how are you?"}],
        "image": [image, {"type": "text", "text": "Describe the image."}],
        "audio": [audio, {"type": "text", "text": "Transcribe the audio clip into text."}],
        "image+audio": [image, audio],
    }


def _one_stream(http: httpx.Client, url: str, content: list[dict], max_tokens: int) -> int:
    """Streams one answer -> its completion tokens (from the usage chunk)."""
    body = {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    tokens = 0
    headers = {"Authorization": f"Bearer {KEY}"}
    with http.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if "error" in event:
                    raise RuntimeError(event["error"]["message"])
                if event.get("usage"):
                    tokens = event["usage"]["completion_tokens"]
    return tokens


def through_server(url: str, streams: int, max_tokens: int, together: bool) -> float:
    """Aggregate tokens/s of `streams` requests (kinds in turn), all at once or one after another."""
    contents = list(_contents().values())
    jobs = [contents[i % len(contents)] for i in range(streams)]
    counts = [0] * streams
    with httpx.Client(timeout=600, limits=httpx.Limits(max_connections=streams + 1)) as http:

        def run(i: int) -> None:
            counts[i] = _one_stream(http, url, jobs[i], max_tokens)

        began = time.perf_counter()
        if together:
            threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            for i in range(streams):
                run(i)
        return sum(counts) / (time.perf_counter() - began)


def direct(service: ConversationService, parts: list, max_tokens: int) -> int:
    """One request of `parts` on the engine itself, no server -> its tokens. It is the request the
    server's service builds from the same message (its system prompt included: the model reads the
    same tokens both ways). Read in a thread of its own, as the server's decode loop runs: on this
    2-core CPU, under load, PyTorch's attention kernel ran 200x slower in the main thread than in
    any other (8 ms against 0.04)."""
    tokens = []

    def run() -> None:
        request, _, _ = service.build_request([Message("user", parts)], SamplingParams(max_new_tokens=max_tokens))
        tokens.append(sum(len(chunk.token_ids) for chunk in service.engine.stream(request)))

    reader = threading.Thread(target=run)
    reader.start()
    reader.join()
    return tokens[0]


def lone_ratios(url: str, service: ConversationService, max_tokens: int, repeats: int) -> tuple[list, list, list]:
    """Each round, every kind once through the server and once directly, one right after the other
    (which goes first alternates from pair to pair), so that the machine's drift (±15 % over
    minutes here) falls between pairs, not inside them -> (server tok/s, direct tok/s, their ratio)
    per round. Each side's input is made before its clock starts."""
    contents, parts = _contents(), {kind: make() for kind, make in MODALITIES.items()}
    server, engine, ratios = [], [], []
    with httpx.Client(timeout=600) as http:
        for round_ in range(repeats):
            spent = {"server": 0.0, "direct": 0.0}
            tokens = {"server": 0, "direct": 0}
            for i, kind in enumerate(contents):
                ways = ("server", "direct") if (round_ + i) % 2 == 0 else ("direct", "server")
                for way in ways:
                    began = time.perf_counter()
                    if way == "server":
                        tokens[way] += _one_stream(http, url, contents[kind], max_tokens)
                    else:
                        tokens[way] += direct(service, parts[kind], max_tokens)
                    spent[way] += time.perf_counter() - began
            server.append(tokens["server"] / spent["server"])
            engine.append(tokens["direct"] / spent["direct"])
            ratios.append(server[-1] / engine[-1])
    return server, engine, ratios


def run(streams: list[int], max_tokens: int, repeats: int, decode: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_tiny_checkpoint(Path(tmp) / "tiny", seed=0)
        engine = Engine.load(LoadOptions(model=str(checkpoint), device="cpu"))
        engine.set_decode(decode)
        service = open_service(Settings.from_env(model=str(checkpoint)), engine=engine)
        settings = {"api_key": KEY, "decode": decode, "max_batch": str(max(streams + [2]))}
        with running_server(checkpoint, Path(tmp) / "serve.log", **settings) as url:
            print(f"# through a real server (HTTP, media as base64), tiny checkpoint, CPU, decode {decode}")
            lone_ratios(url, service, 4, 1)  # warm-up: every kind once, both ways
            # three times the rounds: a round's ratio swings 0.81-1.05 on this shared CPU, and medians
            # of 5 rounds spread 0.86-0.98 over one 30-round run (bench/RESULTS.md, eighth session)
            server, direct_, ratios = lone_ratios(url, service, max_tokens, LONE_ROUNDS_PER_REPEAT * repeats)
            print(
                f"lone request (each kind in turn): server {statistics.median(server):.1f} tok/s, "
                f"direct {statistics.median(direct_):.1f} tok/s, server/direct {statistics.median(ratios):.2f} "
                f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"
            )
            print(f"{'streams':>7} {'one_after_another_tps':>22} {'together_tps':>13} {'ratio':>6}")
            for count in streams:
                serial, together = [], []
                for round_ in range(repeats):  # which goes first alternates, as above
                    for at_once in (False, True) if round_ % 2 == 0 else (True, False):
                        (together if at_once else serial).append(through_server(url, count, max_tokens, at_once))
                ratios = [t / s for t, s in zip(together, serial)]
                print(
                    f"{count:>7} {statistics.median(serial):>22.1f} {statistics.median(together):>13.1f} "
                    f"{statistics.median(ratios):>6.2f}  (rounds {min(ratios):.2f}-{max(ratios):.2f})"
                )
