"""The protections a server on someone's own machine needs (as Jupyter and Ollama have them),
against a real `phi4mm serve` on loopback: its key read from a file, no local path in /health,
Host and Origin checks, slow and idle connections closed, sign-ins that expire and end on sign-out,
wrong keys slowed down, and its files private and gone once unused."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tooling.server import server_process

pytestmark = pytest.mark.slow  # a server of its own, and waits for sessions, files and connections to expire

KEY = "local-first-key-5b1f0bf"
SESSION_S = 4  # login_hours 0.001
TTL_S = 6  # file_ttl_minutes 0.1


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    folder = tmp_path_factory.mktemp("local-first")
    (folder / "key").write_text(KEY + "\n")
    settings = dict(
        api_key_file=str(folder / "key"),
        login_hours="0.001",
        file_ttl_minutes="0.1",
        allowed_hosts="mybox.example",
        allowed_origins="https://frontend.example",
    )
    with server_process(tiny_checkpoint, folder / "serve.log", **settings) as (url, proc):
        yield url, proc, folder / "serve.log"


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server[0], headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield client


def port(url: str) -> int:
    return httpx.URL(url).port


def test_the_key_comes_from_its_file_and_stays_out_of_ps(server, client):
    url, proc, _ = server
    assert KEY not in Path(f"/proc/{proc.pid}/cmdline").read_text()
    assert client.get("/v1/models").status_code == 200
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_health_names_no_local_path(server, tiny_checkpoint):
    health = httpx.get(server[0] + "/health", timeout=10)
    assert health.status_code == 200 and health.json()["model"] == "phi4mm"
    assert str(tiny_checkpoint) not in health.text and tempfile.gettempdir() not in health.text


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("rebind.attacker.example", False),  # a page's own name pointed at 127.0.0.1
        ("localhost.attacker.example", False),
        ("127.0.0.1.nip.io", False),
        ("localhost", True),
        ("127.0.0.1", True),
        ("[::1]", True),
        ("192.168.1.20", True),  # an address is never a rebinding
        ("app.localhost", True),
        ("mybox.example", True),  # --allowed-hosts
    ],
)
def test_only_known_host_names_are_served(server, client, host, allowed):
    answer = client.get("/v1/models", headers={"Host": f"{host}:{port(server[0])}"})
    if allowed:
        assert answer.status_code == 200
    else:
        assert answer.status_code == 403 and "--allowed-hosts" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "method, path",
    [("POST", "/v1/chat/completions"), ("POST", "/gradio_api/upload"), ("POST", "/gradio_api/queue/join"),
     ("GET", "/config"), ("POST", "/login")],
)  # fmt: skip
@pytest.mark.parametrize("origin", ["https://attacker.example", "null", "http://127.0.0.1:1"])
def test_other_sites_pages_are_refused_before_anything_runs(server, method, path, origin):
    """A plain-text POST needs no CORS permission: a page anywhere could run the model through the
    browser of someone on this machine. It is refused from its Origin, before the key is asked for."""
    before = httpx.get(server[0] + "/health", timeout=10).json()["tokens_generated"]
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    answer = httpx.request(
        method, server[0] + path, content=body, headers={"Origin": origin, "Content-Type": "text/plain"}, timeout=30
    )
    assert answer.status_code == 403 and "--allowed-origins" in answer.json()["error"]["message"]
    assert httpx.get(server[0] + "/health", timeout=10).json()["tokens_generated"] == before


@pytest.mark.parametrize("origin", ["own", "https://frontend.example"])
def test_the_apps_own_page_and_allowed_origins_pass(server, client, origin):
    origin = server[0] if origin == "own" else origin
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert client.post("/v1/chat/completions", json=body, headers={"Origin": origin}).status_code == 200


def closed_after(url: str, send_slowly: bytes | None, request: bytes | None = None) -> float:
    """Seconds until the server closes a connection that sends `request` (and reads its answer),
    then trickles `send_slowly` a byte a second, or sends nothing more at all (None)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port(url)), timeout=30) as conn:
        if request:
            conn.sendall(request)
            assert conn.recv(65536).startswith(b"HTTP/1.1 200")
        for byte in send_slowly or b"":
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(1)
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
    return time.monotonic() - started


def test_slow_and_idle_connections_are_closed(server):
    """Slowloris (a request head sent a byte a second) held a connection for ever."""
    url = server[0]
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    trickle = b"X-Slow: " + b"a" * 40
    with ThreadPoolExecutor(3) as pool:
        slowloris = pool.submit(closed_after, url, head + trickle)
        idle = pool.submit(closed_after, url, None)
        kept_alive = pool.submit(closed_after, url, None, head + b"\r\n")
        assert httpx.get(url + "/health", timeout=10).status_code == 200  # others are served meanwhile
        assert slowloris.result() < 14, "a head that never ends must be cut off (10 s)"
        assert idle.result() < 14
        assert kept_alive.result() < 9  # an idle kept-alive connection: 5 s


def test_a_sign_in_expires_and_signing_out_ends_it_on_the_server(server):
    url = server[0]
    with httpx.Client(base_url=url, timeout=30) as browser:
        signed_in = browser.post("/login", data={"key": KEY})
        assert signed_in.status_code == 303 and f"Max-Age={SESSION_S}" in signed_in.headers["set-cookie"]
        cookie = browser.cookies["phi4mm_session"]
        assert browser.get("/config").status_code == 200
        signed_out = browser.get("/logout")
        assert signed_out.status_code == 303 and "Max-Age=0" in signed_out.headers["set-cookie"]
    copied = {"Cookie": f"phi4mm_session={cookie}"}  # the cookie kept (or stolen) after sign-out
    assert httpx.get(url + "/config", headers=copied, timeout=10).status_code == 401
    with httpx.Client(base_url=url, timeout=30) as browser:
        browser.post("/login", data={"key": KEY})
        signed_in_at = time.monotonic()
        assert browser.get("/config").status_code == 200
        while browser.get("/config").status_code == 200:  # expires on the server, whatever the browser keeps
            assert time.monotonic() - signed_in_at < SESSION_S + 3, "the sign-in outlived its time"
            time.sleep(0.2)


def test_private_files_unused_for_the_ttl_go_and_used_ones_stay(server, client):
    config = client.get("/config").json()
    uploaded = [client.post("/gradio_api/upload", files={"files": (f"{n}.txt", n.encode())}).json()[0] for n in "ab"]
    used, unused = (Path(p) for p in uploaded)
    folder = used.parents[1]
    assert folder.parent == Path(tempfile.gettempdir()) and folder.name.startswith("phi4mm-serve-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(used.stat().st_mode) == 0o600
    (echo,) = [i for i, d in enumerate(config["dependencies"]) if d["api_name"] == "lambda"]  # chat history in
    history = [{"role": "user", "content": [{"file": {"path": str(used), "meta": {"_type": "gradio.FileData"}}}]}]
    deadline = time.monotonic() + TTL_S * 3
    while unused.exists():  # a conversation that goes on sends its files with every message
        assert time.monotonic() < deadline, "an unused file outlived its time"
        session = f"ttl{time.monotonic_ns()}"
        client.post("/gradio_api/queue/join", json={"data": [history], "fn_index": echo, "session_hash": session})
        client.get(f"/gradio_api/queue/data?session_hash={session}")
        time.sleep(1)
    assert used.exists()  # as old as the one that went
    assert client.get(f"/gradio_api/file={unused}").status_code == 404
    examples = {p for p in json.dumps(config).split('"') if p.startswith(str(folder))}
    assert examples and all(Path(p).exists() for p in examples)  # the page's own examples stay


def guess(url: str, n: int, **client) -> httpx.Response:
    """One wrong key, from `client` (httpx.Client options, a source address say)."""
    with httpx.Client(**client) as http:
        return http.get(url + "/v1/models", headers={"Authorization": f"Bearer guess{n}"})


def while_waiting(url: str, ask) -> httpx.Response:
    """`ask()` sent right after a wrong key was refused with 429, until it too is refused (5 tries).
    Tries come back at one a second, bit by bit, so one may come back in between, however soon."""
    for _ in range(5):
        assert 429 in (guess(url, n).status_code for n in range(60)), "wrong keys are let through"
        if (answer := ask()).status_code == 429:
            break
    return answer


def test_wrong_keys_are_slowed_down_and_not_even_compared_then(server):
    """A burst of 50 wrong keys, then one a second, per address: naming another address in
    X-Forwarded-For or sending from another loopback address changes nothing. While an address
    waits, not even the right key is compared (otherwise its answer would tell a guess apart)."""
    url, _, log = server
    ways = [
        {},
        {"headers": {"X-Forwarded-For": "10.0.0.7"}},
        {"transport": httpx.HTTPTransport(local_address="127.0.0.2")},
        {"transport": httpx.HTTPTransport(local_address="127.0.3.4")},
    ]
    codes, started = [], time.monotonic()
    while 429 not in codes and len(codes) < 200:
        codes.append(guess(url, len(codes), **ways[len(codes) % len(ways)]).status_code)
    wrong = codes.count(401)
    assert codes[-1] == 429 and 45 <= wrong <= 50 + time.monotonic() - started + 1, (wrong, codes[-3:])
    assert [while_waiting(url, lambda way=way: guess(url, 0, **way)).status_code for way in ways] == [429] * len(ways)
    right = {"Authorization": f"Bearer {KEY}"}
    waiting = while_waiting(url, lambda: httpx.get(url + "/v1/models", headers=right))
    assert waiting.status_code == 429 and int(waiting.headers["Retry-After"]) >= 1
    assert while_waiting(url, lambda: httpx.post(url + "/login", data={"key": KEY})).status_code == 429
    assert "ASGI" not in log.read_text()  # each refusal a clean answer, not a logged error
    deadline = time.monotonic() + 5  # a try comes back each second; waiting asks cost none
    while (status := httpx.get(url + "/v1/models", headers=right).status_code) == 429:
        assert time.monotonic() < deadline, "the right key never got in again"
        time.sleep(0.1)
    assert status == 200


def test_an_unreadable_key_file_stops_the_server_at_once(tiny_checkpoint, tmp_path):
    from tooling.server import PHI4MM

    empty = tmp_path / "empty"
    empty.write_text("\n")
    for key_file, words in ((tmp_path / "missing", "cannot be read"), (empty, "is empty")):
        started = subprocess.run(
            [PHI4MM, "serve", "--model", str(tiny_checkpoint), "--api-key-file", str(key_file)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert started.returncode == 2 and words in started.stderr and "Traceback" not in started.stderr
