"""Signing in with the server's key: the browser's sessions and a limit on wrong keys.

A sign-in is a random token that only the server knows to be valid: it lasts `login_hours`, and
signing out (/logout) ends it on the server, so a copied cookie stops working too. Wrong keys
(by Bearer, cookie or the sign-in form) cost their address one try from a bucket of
`FailedAttempts.BURST`, refilled at one a second; with the bucket empty, a key is not even
compared until a try is back, so guessing runs at one key a second at most.
"""

from __future__ import annotations

import ipaddress
import secrets
import time

COOKIE = "phi4mm_session"
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Phi-4-multimodal: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:26em;margin:12vh auto;padding:0 1em}}
input,button{{font-size:1em;padding:.5em;width:100%;box-sizing:border-box;margin:.3em 0}}
.error{{color:#b00020}}</style></head><body><h1>Sign in</h1>
<p>This server needs its access key (the one it was started with).</p>
{error}<form method="post" action="/login"><input type="password" name="key" placeholder="Access key"
autocomplete="current-password" autofocus required><button type="submit">Open the app</button></form></body></html>"""


class Sessions:
    """Browser sign-ins by token -> when each ends (monotonic seconds)."""

    MAX = 10_000  # sign-ins held at once; past this the oldest goes first

    def __init__(self, hours: float):
        self.lifetime_s = max(1, round(hours * 3600))
        self._ends: dict[str, float] = {}

    def start(self) -> str:
        now = time.monotonic()
        self._ends = {token: end for token, end in self._ends.items() if end > now}
        while len(self._ends) >= self.MAX:
            self._ends.pop(next(iter(self._ends)))
        token = secrets.token_urlsafe(32)
        self._ends[token] = now + self.lifetime_s
        return token

    def valid(self, token: str) -> bool:
        end = self._ends.get(token)
        if end is not None and end <= time.monotonic():
            self._ends.pop(token, None)
            end = None
        return end is not None

    def end(self, token: str) -> None:
        self._ends.pop(token, None)

    def cookie(self, token: str, max_age: int | None = None) -> str:
        """The Set-Cookie value for `token` (an empty one with max_age 0 clears it)."""
        age = self.lifetime_s if max_age is None else max_age
        return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={age}"


def cookie_token(cookie_header: str) -> str | None:
    """The session token in a Cookie header, if there is one."""
    for part in cookie_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def client_of(scope) -> str:
    """Whom wrong keys are counted against: the peer's address, with every loopback address as one
    (any local program may send from 127.x.y.z, one address per guess). X-Forwarded-For is not
    read: the server trusts no proxy header (app/http_server.py), so a client cannot name itself."""
    host = (scope.get("client") or ("?",))[0]
    try:
        return "loopback" if ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host


class FailedAttempts:
    """Wrong keys per client address, as a token bucket (one try refilled a second)."""

    BURST = 50  # wrong keys an address may send at once before it has to wait
    REFILL_PER_S = 1.0
    MAX_CLIENTS = 10_000  # addresses remembered; a full bucket needs no memory

    def __init__(self):
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tries left, when counted)

    def wait_s(self, client: str) -> float:
        """Seconds until `client` may try a key again (0: now)."""
        left = self._left(client)
        return 0.0 if left >= 1 else (1 - left) / self.REFILL_PER_S

    def failed(self, client: str) -> None:
        if len(self._buckets) >= self.MAX_CLIENTS:
            now = time.monotonic()
            self._buckets = {c: b for c, b in self._buckets.items() if self._refilled(b, now) < self.BURST}
            while len(self._buckets) >= self.MAX_CLIENTS:  # many addresses at once: forget the oldest
                self._buckets.pop(next(iter(self._buckets)))
        self._buckets[client] = (self._left(client) - 1, time.monotonic())

    def _left(self, client: str) -> float:
        bucket = self._buckets.get(client)
        return self.BURST if bucket is None else self._refilled(bucket, time.monotonic())

    def _refilled(self, bucket: tuple[float, float], now: float) -> float:
        left, counted = bucket
        return min(self.BURST, left + (now - counted) * self.REFILL_PER_S)
