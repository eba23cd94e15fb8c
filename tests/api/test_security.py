"""A hostile client against the real server (it has an API key): no file leaves the server, the
key locks every door but /health, refusals come from the headers before any body is read, and
nothing a client sends takes the server down."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import API_KEY
from tooling.hostile_client import SECRET, HostileClient, file_data, secret_targets

KEYED = {"Authorization": f"Bearer {API_KEY}"}
PROCESSED = ("process_completed", "process_generating", "process_streaming")  # an event's result is out


def address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


def raw_exchange(url: str, head: bytes, body: bytes = b"", wait_s: float = 5) -> bytes:
    """Sends raw bytes on one connection; returns what the server answered within `wait_s`."""
    with socket.create_connection(address(url), timeout=wait_s) as conn:
        conn.sendall(head + body)
        try:
            return conn.recv(65536)
        except socket.timeout:
            return b""


def healthy(url: str) -> bool:
    return httpx.get(url + "/health", timeout=10).json()["status"] == "ok"


# -- the key locks every door ----------------------------------------------------------------

ROUTES = [  # (method, path): the browser app, Gradio's own routes, the API, the monitoring
    ("GET", "/"),
    ("GET", "/config"),
    ("GET", "/gradio_api/info"),
    ("GET", "/gradio_api/openapi.json"),
    ("POST", "/gradio_api/upload"),
    ("POST", "/gradio_api/call/chat"),
    ("POST", "/gradio_api/call/transcribe"),
    ("POST", "/gradio_api/call/photo_by_voice"),
    ("POST", "/gradio_api/call/summarize"),
    ("POST", "/gradio_api/queue/join"),
    ("GET", "/gradio_api/queue/data?session_hash=x"),
    ("GET", "/gradio_api/file=/etc/hostname"),
    ("GET", "/gradio_api/heartbeat/x"),
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/audio/transcriptions"),
    ("GET", "/metrics"),
    ("GET", "/theme.css"),
    ("GET", "/assets/index.js"),
    ("GET", "/favicon.ico"),
]


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Cookie": "phi4mm_session=forged"}],
    ids=["no-key", "wrong-key", "forged-cookie"],
)
def test_every_route_but_health_needs_the_key(web_server, method, path, headers):
    response = httpx.request(method, web_server + path, headers=headers, timeout=10, json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


# More routes of the API; asked without a key only, since wrong keys from one address are rate
# limited (the gate's bucket is the same for every route, and the list above spends it).
MORE_API_ROUTES = [
    ("POST", "/v1/audio/translations"),
    ("GET", "/v1/models/phi4mm"),
    ("POST", "/v1/responses"),
    ("GET", "/v1/responses/resp_x"),
    ("DELETE", "/v1/responses/resp_x"),
    ("POST", "/tokenize"),
    ("POST", "/detokenize"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize("method, path", MORE_API_ROUTES)
def test_the_newer_api_routes_need_the_key_too(web_server, method, path):
    response = httpx.request(method, web_server + path, timeout=10, json={})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("method, path", ROUTES + MORE_API_ROUTES)
def test_with_the_key_no_route_says_unauthorised(web_server, method, path):
    with httpx.stream(method, web_server + path, headers=KEYED, timeout=30, json={}) as response:
        assert response.status_code != 401  # (an event stream's body is not waited for)


def test_health_stays_open(web_server):
    assert httpx.get(web_server + "/health", timeout=10).status_code == 200


def test_a_browser_signs_in_and_gets_a_session_cookie(web_server):
    with httpx.Client(base_url=web_server, timeout=30) as browser:
        page = browser.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert "Access key" in browser.get("/login").text
        assert browser.post("/login", data={"key": "wrong"}).status_code == 401
        signed_in = browser.post("/login", data={"key": API_KEY})
        assert signed_in.status_code == 303 and "HttpOnly" in signed_in.headers["set-cookie"]
        assert API_KEY not in signed_in.headers["set-cookie"]  # the cookie is derived, not the key itself
        assert browser.get("/", headers={"Accept": "text/html"}).status_code == 200
        assert browser.get("/config").status_code == 200


# -- no file leaves the server --------------------------------------------------------------


@pytest.fixture
def secret_files(tmp_path):
    """Server files a client must never get at (tooling/hostile_client.py makes them): a photo and
    a recording that would decode fine, each carrying SECRET in its metadata, in the system's temp
    folder, and /etc/hostname."""
    secret_targets(tmp_path)
    return {"image": tmp_path / "secret.png", "audio": tmp_path / "secret.wav", "system": "/etc/hostname"}


@pytest.mark.parametrize(
    "endpoint, data",
    [
        ("chat", lambda f: [{"text": "What is this?", "files": [file_data(f["image"])]}, [], "", 16, 0, 1, 36, 4]),
        ("chat", lambda f: [{"text": "What is this?", "files": [file_data(f["audio"])]}, [], "", 16, 0, 1, 36, 4]),
        ("photo_by_voice", lambda f: [file_data(f["image"]), file_data(f["audio"]), "What is this?"]),
        ("transcribe", lambda f: [file_data(f["audio"]), "Transcribe", "English", False]),
        ("summarize", lambda f: [file_data(f["audio"]), "bullets", "", None, "words"]),
        ("chat", lambda f: [{"text": "What is this?", "files": [file_data(f["system"])]}, [], "", 16, 0, 1, 36, 4]),
    ],
)
def test_model_events_refuse_server_paths(web_server, secret_files, endpoint, data):
    """On main these files went into the model (chat answered with the vision adapter)."""
    hostile = HostileClient(web_server, API_KEY, {str(path): SECRET.encode() for path in secret_files.values()})
    with httpx.Client(headers=KEYED, timeout=60) as client:
        event = client.post(web_server + f"/gradio_api/call/{endpoint}", json={"data": data(secret_files)})
        assert event.status_code == 200
        with client.stream("GET", web_server + f"/gradio_api/call/{endpoint}/{event.json()['event_id']}") as s:
            answer = s.read().decode()
        assert "event: error" in answer and "adapter" not in answer
        assert not hostile.leaked(answer)
        for path in secret_files.values():
            assert SECRET not in client.get(web_server + f"/gradio_api/file={path}").text


def test_a_real_upload_still_works(web_server, tmp_path):
    photo = tmp_path / "photo.png"
    from tooling.inputs import make_photo

    make_photo().save(photo)
    with httpx.Client(headers=KEYED, timeout=60) as client:
        uploaded = client.post(web_server + "/gradio_api/upload", files={"files": photo.open("rb")}).json()[0]
        message = {"text": "What is this?", "files": [file_data(uploaded)]}
        event = client.post(web_server + "/gradio_api/call/chat", json={"data": [message, [], "", 16, 0, 1, 4, 4]})
        with client.stream("GET", web_server + f"/gradio_api/call/chat/{event.json()['event_id']}") as s:
            answer = s.read().decode()
    assert "vision adapter" in answer


# -- refused from the headers, before the body -----------------------------------------------


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/chat/completions", "/gradio_api/upload"])
@pytest.mark.parametrize("auth, status", [(f"Authorization: Bearer {API_KEY}\r\n", b"413"), ("", b"401")])
def test_a_1_gib_body_is_refused_before_it_is_sent(web_server, path, auth, status):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {2**30}\r\n\r\n"
    ).encode()
    answer = raw_exchange(web_server, head, b"--b\r\n")  # nothing more is ever sent
    assert answer.split(b"\r\n")[0].split(b" ")[1] == status, answer[:200]


def test_a_chunked_body_past_the_cap_is_cut_off(web_server):
    host, port = address(web_server)
    chunk = b"x" * 2**20
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for _ in range(48):  # the test server's cap is 40 MB
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:
            pass  # the server may hang up once it has refused
        answer = conn.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert healthy(web_server)


def test_huge_headers_are_refused_and_the_server_keeps_serving(web_server):
    head = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 200_000}\r\n\r\n".encode()
    answer = raw_exchange(web_server, head)
    assert answer == b"" or not answer.startswith(b"HTTP/1.1 200")
    assert healthy(web_server)


# -- malformed and absurd requests -----------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, text",
    [
        (b"{", 422, "JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, 422, "JSON object"),
        (b'"just a string"', 422, "JSON object"),
        (
            json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}).encode(),
            400,
            "`max_tokens` must be",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**12}).encode(),
            400,
            "context window",
        ),
    ],
)
def test_malformed_and_absurd_requests_get_a_clear_answer(web_server, body, status, text):
    response = httpx.post(
        web_server + "/v1/chat/completions",
        content=body,
        timeout=30,
        headers={**KEYED, "Content-Type": "application/json"},
    )
    assert response.status_code == status
    assert text in response.json()["error"]["message"]
    assert healthy(web_server)


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "data:,x"}]}]},
            "messages[0].content[0].image_url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": "UklGRg=="}]}]},
            "messages[0].content[0].input_audio",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": 5}}]}]},
            "messages[0].content[0].input_audio.data",
        ),
        ({"messages": HI, "stop": 5}, "stop"),
        ({"messages": HI, "temperature": "0.5"}, "temperature"),
        ({"messages": HI, "stream": "yes"}, "stream"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].image_url"),
    ],
)
def test_a_body_of_the_wrong_shape_gets_400_naming_the_field(web_server, body, param):
    response = httpx.post(web_server + "/v1/chat/completions", json=body, timeout=30, headers=KEYED)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and f"`{param}`" in error["message"]
    assert healthy(web_server)


def test_a_100k_deep_object_gets_400_at_once(web_server):
    deep = b'{"messages": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001
    response = httpx.post(
        web_server + "/v1/chat/completions",
        content=deep,
        timeout=30,
        headers={**KEYED, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
    assert healthy(web_server)


def test_a_live_chunk_naming_the_pages_own_files_removes_nothing(web_server):
    """The live recorder's chunks are removed once read, and a client names the chunk's path: with
    a meeting of its own open, it named the page's example photo and deleted it for every user."""
    with httpx.Client(headers=KEYED, timeout=60) as client:
        config = client.get(web_server + "/config").json()
        events = {d["api_name"]: i for i, d in enumerate(config["dependencies"])}
        examples = sorted({p for p in json.dumps(config).split('"') if p.startswith("/") and "phi4mm-serve-" in p})
        assert examples
        session = "remover"
        for name, data in [("live_start", [])] + [("live_chunk", [file_data(p)]) for p in examples]:
            body = {"data": data, "fn_index": events[name], "session_hash": session}
            assert client.post(web_server + "/gradio_api/queue/join", json=body).status_code == 200
            with client.stream("GET", web_server + f"/gradio_api/queue/data?session_hash={session}") as stream:
                # a streamed event stays open for the next chunk: its first result is enough
                next(line for line in stream.iter_lines() if any(f'"{m}"' in line for m in PROCESSED))
        for path in examples:
            assert client.get(web_server + f"/gradio_api/file={path}").status_code == 200, path
