"""An answer as server-sent events, handed to the event loop without a worker thread: chat
completions' chunks here (`sse_events`), a Responses answer's events (app/responses_stream.py),
a transcript's (app/transcription.py).

The request is checked before any of this runs (`open_stream`: app/service.py `chat` refuses on
the call), so a refusal is an error status; what fails after the 200 can only end the stream
with an error event. The events reach the HTTP layer through an asyncio queue:
- from a local engine that `pushes` (its scheduler's thread decodes), the engine's thread calls
  `Handoff.wake` for each token (a round's wakes reach the loop together: app/loop_waker.py), and
  the event loop runs the answer's own steps (detokenising, the output guard, the event's JSON)
  up to the next `PENDING`: no thread is held per stream. An answer's first and last tokens go
  out at once, those between at most every `FLUSH_EVERY_S`, together: each step of the loop takes
  the GIL from the decoding thread, and stepping once per token cost a lone request a tenth of
  its speed on a 2-core CPU (bench/RESULTS.md);
- from an engine that decodes in its consumer's thread (the remote backend, a lone local request
  one at a time), one plain thread per stream iterates and queues each event.
An answer whose events need blocking work midway (a transcript prepares each segment's audio)
yields `OffLoop(work)`: on the loop the work runs in the worker pool, borrowed for it alone, and
its result is sent back into the events.
The client leaving is read from ASGI `receive()` (http.disconnect): it cancels generation and
gives the admission slot back at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, Callable, Generator, Iterator

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.api_errors import APIError, error_body
from app.chat_request import ChatPlan, choice, openai_logprobs, usage
from app.chat_schema import ChatCompletionChunk, Delta, FunctionCallDelta, ToolCallDelta
from app.loop_waker import waker_for
from app.tool_calls import PREFIX, could_be_call
from app.tool_stream import CallStream
from core.errors import InvalidRequest, Phi4mmError
from engine.request import PENDING, Metrics

log = logging.getLogger(__name__)
FLUSH_EVERY_S = 0.02  # between two sends of one answer's tokens (50 a second: smooth to the eye)
DONE = "data: [DONE]\n\n"  # a chat stream's last event (the Responses API and transcripts send none)
END = object()  # the end of a stream's events, in the queue


async def client_left(receive) -> None:
    """Returns when the client has gone (once the body is read, `receive()` waits for just that)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class OffLoop:
    """Yielded by an event generator: run `work` off the event loop and send me its result."""

    def __init__(self, work: Callable[[], Any]):
        self.work = work


class Handoff:
    """Moves one answer's events from where they are made to the coroutine that sends them."""

    def __init__(self, pushes: bool):
        self.loop = asyncio.get_running_loop()
        self.waker = waker_for(self.loop)  # the engine's wakes, one hand-over per round (app/loop_waker.py)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.pushes = pushes  # the events are made on the loop, woken by the engine's thread
        self.events: Generator | None = None
        self._woken = False
        self._flushed_at = float("-inf")  # the loop's time when the tokens last went out
        self._closed = False
        self._off_loop = False  # the events wait for an OffLoop's work: a wake must not step them
        self._work: asyncio.Future | None = None  # that work's task, held (the loop holds it weakly)

    def on_token(self):
        """What the request's `on_token` is: None where the engine does not push."""
        return self.wake if self.pushes else None

    def wake(self, last: bool = False) -> None:
        """From the engine's thread: a token is ready (`last`: nothing follows it). Wakes that come
        before the step they asked for make that one step; the last one steps at once."""
        if self._woken and not last:
            return
        self._woken = True
        try:
            self.waker.call_soon(self._step if last else self._due)
        except RuntimeError:  # the loop has closed (the server stopped): nobody is listening
            pass

    def _due(self) -> None:
        """On the loop: step now, or FLUSH_EVERY_S after the last time the tokens went out."""
        wait = self._flushed_at + FLUSH_EVERY_S - self.loop.time()
        if wait > 0:
            self.loop.call_later(wait, self._flush)
        else:
            self._flush()

    def _flush(self) -> None:
        self._flushed_at = self.loop.time()
        self._step()

    def start(self, events: Iterator[str]) -> None:
        self.events = events
        if self.pushes:
            self._step()
        else:
            threading.Thread(target=self._produce, name="sse-stream", daemon=True).start()

    def _step(self, sent=None, failed: BaseException | None = None) -> None:
        """On the loop: every event that is ready, up to the next PENDING or OffLoop (never waits)."""
        self._woken = False
        while not self._closed and not self._off_loop:
            event = _advance(self.events, sent, failed)
            sent = failed = None
            if event is PENDING:
                return
            if isinstance(event, OffLoop):
                self._off_loop = True
                self._work = asyncio.ensure_future(self._run_off_loop(event.work))
                return
            self.queue.put_nowait(event)
            if event is END:
                self._closed = True

    async def _run_off_loop(self, work) -> None:
        try:
            result, failed = await run_in_threadpool(work), None
        except Exception as err:  # noqa: BLE001 - the events' own error handling takes it
            result, failed = None, err
        self._off_loop = False
        if self._closed:  # the client left meanwhile: what the work opened is nobody's now
            _discard(result)
        self._step(result, failed)

    def _produce(self) -> None:
        """In its own thread: the events of an engine that decodes in its consumer's thread."""
        sent = failed = None
        try:
            while not self._closed and (event := _advance(self.events, sent, failed)) is not END:
                sent = failed = None
                if isinstance(event, OffLoop):  # this thread is off the loop already
                    try:
                        sent = event.work()
                    except Exception as err:  # noqa: BLE001 - the events' own error handling takes it
                        failed = err
                    continue
                self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
            self.loop.call_soon_threadsafe(self.queue.put_nowait, END)
        except RuntimeError:  # the loop has closed
            pass
        finally:
            _discard(sent)  # an OffLoop's result the events never got (the client left meanwhile)
            self.events.close()

    def close(self) -> None:
        """On the loop, when the response ends (or the client left): no more events are made."""
        if not self._closed:
            self._closed = True
            if self.pushes:
                self.events.close()  # runs only on the loop, so never while a step is running
            # a producing thread stops at its next event; the request's cancel ends that soon


def _discard(result) -> None:
    """Closes an OffLoop's result that will never be used (an answer whose stream is open)."""
    if close := getattr(result, "close", None):
        close()


def _advance(events: Generator, sent, failed: BaseException | None):
    """The events' next item, `sent` (or `failed`, raised) handed in where they wait -> END when done."""
    try:
        return events.throw(failed) if failed is not None else events.send(sent)
    except StopIteration:
        return END


class EventStream(Response):
    """The ASGI response of one streamed answer. Its `finally` never awaits: it runs when the
    client left too, in a cancelled scope, and must give the slot back there."""

    media_type = "text/event-stream"

    def __init__(self, handoff: Handoff, ticket, cancel: threading.Event, headers: dict[str, str]):
        self.handoff, self.ticket, self.cancel = handoff, ticket, cancel
        self.status_code, self.background = 200, None
        self.init_headers(headers)

    async def __call__(self, scope, receive, send) -> None:
        try:
            async with anyio.create_task_group() as tasks:

                async def watch():
                    await client_left(receive)
                    tasks.cancel_scope.cancel()

                tasks.start_soon(watch)
                try:
                    await self._send_events(send)
                except OSError:  # the client left while we were sending
                    pass
                tasks.cancel_scope.cancel()
        finally:
            self.cancel.set()
            self.ticket.release()
            self.handoff.close()

    async def _send_events(self, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        queue, ended = self.handoff.queue, False
        while not ended:
            events = [await queue.get()]
            while not queue.empty():  # every event ready goes out in one write
                events.append(queue.get_nowait())
            if ended := events[-1] is END:  # END comes last
                events.pop()
            if events:
                await send({"type": "http.response.body", "body": "".join(events).encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def open_stream(
    service, messages, chat_plan: ChatPlan, ticket, headers: dict, events, refused=None
) -> EventStream:
    """The stream of one answer, `events(replies)` its event texts. Everything that can refuse
    the request runs here, before the 200 (service.chat refuses on the call), so a bad stream gets
    the same error status and body as a bad request (`refused(err)`: the error as the route names
    it). The ticket is given back on a refusal, else when the stream ends."""
    cancel, handoff = threading.Event(), Handoff(service.engine.pushes)

    def checked():
        options = chat_plan.options()
        return service.chat(messages, chat_plan.params[0], cancel=cancel, on_token=handoff.on_token(), **options)

    try:
        replies = await run_in_threadpool(checked)
    except BaseException as err:
        ticket.release()
        if isinstance(err, Phi4mmError):
            raise APIError(refused(err) if refused else err, headers) from None
        raise
    handoff.start(events(replies))
    return EventStream(handoff, ticket, cancel, headers)


def sse_events(replies, chat_plan: ChatPlan, template: ChatCompletionChunk, include_usage: bool) -> Iterator[str]:
    """The answer's replies (app/service.py) as server-sent events, each a chunk like `template`,
    then (with `stream_options.include_usage`) one chunk with empty `choices` and the usage, as
    OpenAI sends it; `PENDING` passes through. With tools offered, text that may still become a
    call is held back; a call a grammar shapes streams as it is written (app/tool_stream.py), any
    other well-formed call goes out as one `tool_calls` delta at the end, anything else as text.
    Whatever fails after the response has started (it cannot become an error status any more)
    ends the stream with an error event and `[DONE]`; a guard refusal cannot retract streamed
    text, so it arrives as the last delta with finish_reason content_filter."""

    def event(delta: Delta | None, finish: str | None = None, metrics: Metrics | None = None, logprobs=None) -> str:
        body = template.model_dump(exclude={"usage", "choices"})
        body["choices"] = (
            []
            if delta is None
            else [{"index": 0, "delta": delta.model_dump(exclude_none=True), "finish_reason": finish}]
        )
        if logprobs := openai_logprobs(logprobs):
            body["choices"][0]["logprobs"] = logprobs.model_dump()
        if metrics:
            body["usage"] = usage([metrics]).model_dump()
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield event(Delta(role="assistant", content=""))
        held, final = "", None  # held: text that may still turn out to be a tool call
        calls = CallStream() if chat_plan.shaped_calls else None  # a shaped call streams as written
        for reply in replies:
            if reply is PENDING:
                yield PENDING
                continue
            if reply.finish_reason:  # its text joins what is held, below
                final = reply
                break
            text = reply.text
            if calls is not None and calls.started:
                yield from (event(Delta(tool_calls=[d])) for d in calls.feed(text))
                continue
            if chat_plan.tools and (held or could_be_call(text)):
                held += text
                if calls is not None and held.lstrip().startswith(PREFIX):
                    yield from (event(Delta(tool_calls=[d])) for d in calls.feed(held))
                    held = ""
                    continue
                text, held = ("", held) if could_be_call(held) else (held, "")
            if text:
                yield event(Delta(content=text), logprobs=reply.logprobs)
        if final is not None:
            text = final.text if final.replace else held + final.text  # a guard refusal replaces it all
            if calls is not None and calls.started:
                deltas = calls.feed(text)
                text = calls.text  # the whole answer: if no call could be read as it came, it goes out whole
            if calls is not None and calls.calls:
                yield from (event(Delta(tool_calls=[d])) for d in deltas)
                yield event(Delta(), "tool_calls" if final.finish_reason == "stop" else final.finish_reason)
            elif (answer := choice(0, text, final, chat_plan.tools)).message.tool_calls:
                whole = [
                    ToolCallDelta(
                        index=i, id=c.id, type="function", function=FunctionCallDelta(**c.function.model_dump())
                    )
                    for i, c in enumerate(answer.message.tool_calls)
                ]
                yield event(Delta(tool_calls=whole), "tool_calls")
            else:
                yield event(Delta(content=text or None), final.finish_reason, logprobs=final.logprobs)
            if include_usage:
                yield event(None, metrics=final.metrics)
    except Exception as err:  # noqa: BLE001 - the stream's last word, whatever went wrong
        if isinstance(err, Phi4mmError):
            kind = "invalid_request_error" if isinstance(err, InvalidRequest) else "server_error"
            body = error_body(str(err), kind)
        else:
            log.error("an answer failed while streaming", exc_info=err)
            body = error_body("Generating this answer failed on the server.", "server_error")
        yield f"data: {json.dumps(body)}\n\n"
    finally:
        replies.close()  # closing the replies stops the generation (a dropped client, Stop)
    yield DONE
