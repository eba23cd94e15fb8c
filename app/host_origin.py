"""Two checks of a request's headers that keep a web page from using a server on this machine
through the visitor's browser (the protections Jupyter and Ollama have):

- the Host: a page can point a name of its own at 127.0.0.1 (DNS rebinding) and then talk to a
  loopback server as its own origin. The Host header then carries that name, so only known names
  pass: localhost, the address the server listens on, this machine's host name, any IP address (a
  rebinding needs a name), and `allowed_hosts`.
- the Origin: a page of another site can still send a request here (a form or a plain-text POST
  needs no CORS permission). Browsers name the page's origin in `Origin`, so a request carrying
  one that is not this server's own (or in `allowed_origins`) is refused, whatever its method.
  Clients that are not browsers send no Origin and are not affected.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from core.settings import Settings

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def _names(value: str) -> set[str]:
    return {name.strip().lower().rstrip(".") for name in value.split(",") if name.strip()}


def split_host(value: str) -> tuple[str, int | None]:
    """A Host header or an origin's netloc -> (lower-case name without brackets, port or None).
    A malformed one gives a name that matches nothing."""
    try:
        parts = urlsplit("//" + value)
        return (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        return "\0", None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class HostAndOrigin:
    def __init__(self, settings: Settings):
        hosts = _names(settings.allowed_hosts)
        self.any_host = "*" in hosts
        # the host name only: getfqdn() asks DNS, which can hang a machine without network at start
        self.hosts = hosts | LOOPBACK_NAMES | _names(settings.host) | _names(socket.gethostname())
        origins = {origin.rstrip("/") for origin in _names(settings.allowed_origins)}
        self.any_origin = "*" in origins
        self.origins = origins

    def refusal(self, headers: dict[str, str]) -> str | None:
        """Why a request with these (lower-case) headers may not pass (a 403's message), or None."""
        host = headers.get("host")
        if host is not None and not self.host_allowed(host):
            return (
                f"This server does not answer to the host name {split_host(host)[0]!r}. If that name is "
                "yours, start it with --allowed-hosts naming it (or PHI4MM_ALLOWED_HOSTS)."
            )
        origin = headers.get("origin")
        if origin is not None and not self.origin_allowed(origin, host or ""):
            return (
                "Requests from other web sites' pages are refused here. To let a page of yours use this "
                "server, start it with --allowed-origins naming that page's origin (or PHI4MM_ALLOWED_ORIGINS)."
            )
        return None

    def host_allowed(self, host: str) -> bool:
        name, _ = split_host(host)
        return self.any_host or name in self.hosts or name.endswith(".localhost") or is_ip(name)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """The page's own origin (same host and port as the request's Host), or an allowed one.
        `null` (a sandboxed frame, a file: page) is never the page's own."""
        if self.any_origin or origin.lower().rstrip("/") in self.origins:
            return True
        parts = urlsplit(origin.lower()) if origin != "null" else None
        if parts is None or parts.scheme not in DEFAULT_PORTS:
            return False
        try:
            origin_port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return False
        host_name, host_port = split_host(host)
        # a Host without a port was reached on its scheme's default port (a proxy in front, say)
        same_port = host_port == origin_port or (host_port is None and parts.port is None)
        return (parts.hostname or "").rstrip(".") == host_name and same_port
