"""A client that leaves while sending its request is a cancelled request (499 in /metrics, one
line in the log), not a server error with a traceback; on the shared real server, both routes
that read a body."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.api.test_metrics import scrape
from tests.conftest import API_KEY

MULTIPART_START = (
    b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF'
)


def leave_during_upload(web_server: str, path: str, content_type: str, start: bytes) -> None:
    """Headers that promise 100,000 bytes, the first few of them, then the connection closes."""
    url = urlsplit(web_server)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head.encode() + start)
        time.sleep(0.2)  # the route is reading the body by now


def requests_counted(web_server: str, endpoint: str, code: str) -> float:
    return scrape(web_server).get(("phi4mm_requests_total", (("code", code), ("endpoint", endpoint))), 0)


@pytest.mark.parametrize(
    "endpoint, path, content_type, start",
    [
        ("chat", "/v1/chat/completions", "application/json", b'{"messages": ['),
        ("transcriptions", "/v1/audio/transcriptions", "multipart/form-data; boundary=cut", MULTIPART_START),
    ],
)
def test_a_client_that_leaves_during_its_upload_is_cancelled(
    web_server, web_server_log, endpoint, path, content_type, start
):
    logged_before = len(web_server_log.read_bytes())
    cancelled, failed = requests_counted(web_server, endpoint, "499"), requests_counted(web_server, endpoint, "500")
    leave_during_upload(web_server, path, content_type, start)
    deadline = time.monotonic() + 10
    while requests_counted(web_server, endpoint, "499") == cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
    assert requests_counted(web_server, endpoint, "499") == cancelled + 1
    assert requests_counted(web_server, endpoint, "500") == failed  # was a 500 for the chat route
    logged = web_server_log.read_bytes()[logged_before:].decode()
    assert "Traceback" not in logged and "ClientDisconnect" not in logged and "ERROR" not in logged
