"""The HTTP server (uvicorn) as `phi4mm serve` runs it: connections that hold a place without
sending a request are closed, and a stop signal ends open generations the way Docker expects."""

from __future__ import annotations

import logging
import os

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)
HEAD_TIMEOUT_S = 10  # the whole request line and headers must arrive within this
KEEP_ALIVE_S = 5  # an idle kept-alive connection is closed after this (uvicorn's default)


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for a request's head. uvicorn closes a connection
    that stays idle between requests, but any byte resets that, so a client sending its headers a
    byte at a time (slowloris) held a connection for ever; a few hundred of them take every file
    descriptor. The deadline starts when the connection opens or a response completes, and ends
    when the next request's head has arrived (uvicorn then starts a new request cycle). The body's
    own pace is the gate's business (app/gate.py)."""

    head_deadline = None
    awaited_after = None  # the request cycle that the awaited head comes after (None: the first)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self.awaited_after:
            self._stop_head_deadline()

    def on_response_complete(self) -> None:
        finished = self.cycle
        super().on_response_complete()
        if self.cycle is finished:  # no pipelined request began meanwhile
            self._start_head_deadline()

    def handle_websocket_upgrade(self, event) -> None:
        self._stop_head_deadline()  # the connection now belongs to the WebSocket protocol
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def _start_head_deadline(self) -> None:
        self._stop_head_deadline()
        self.awaited_after = self.cycle
        self.head_deadline = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

    def _stop_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection whose request head took over %d s", HEAD_TIMEOUT_S)
            self.transport.close()


class GracefulServer:
    """uvicorn, stopping the way Docker expects. On SIGTERM or SIGINT it stops accepting, ends every
    open generation with a clear "shutting down" error (streams get it as their last event) and
    exits within `grace_s`, before Docker's 10 s grace period runs out; a second signal exits at once,
    after `on_exit_now` (the server's files go either way)."""

    def __init__(self, app, host: str, port: int, on_stop, on_exit_now=lambda: None, grace_s: int = 7):
        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=grace_s,
            timeout_keep_alive=KEEP_ALIVE_S,
            http=HeadTimeoutProtocol,
            # no X-Forwarded-For: uvicorn trusts it from 127.0.0.1 by default, so any local program
            # could name any address and so escape the limit on wrong keys (app/sign_in.py)
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.on_stop = on_stop
        handle_exit = self.server.handle_exit

        def stop(sig, frame):
            if self.server.should_exit:  # the second signal
                log.warning("second stop signal: exiting now")
                on_exit_now()  # os._exit runs no clean-up of its own
                os._exit(1)
            log.warning("stopping: no new requests; open generations end now")
            self.on_stop()
            handle_exit(sig, frame)

        self.server.handle_exit = stop

    def run(self) -> None:
        self.server.run()
