"""A Responses API answer as the events OpenAI streams: `response.created`, then for a text
answer `response.output_item.added` (a message), `response.content_part.added`,
`response.output_text.delta` as text comes, and their `.done` events; for tool calls, each call's
`response.output_item.added`, `response.function_call_arguments.delta` / `.done` and
`response.output_item.done`; last `response.completed` (or `response.incomplete` at the token
cap). Text that may still become a tool call is held back, as in a chat stream; the events reach
the client as a chat stream's do, checked before the 200 and with no thread held
(app/sse_stream.py)."""

from __future__ import annotations

import itertools
from typing import Callable, Iterator

from app.chat_request import ChatPlan, choice
from app.responses import finished, new_id, output_items
from app.responses_schema import FunctionCallItem, OutputMessage, OutputTextPart, ResponseObject
from app.sse import event, stream_error
from app.tool_calls import could_be_call
from engine.request import PENDING


def response_events(
    replies, chat_plan: ChatPlan, template: ResponseObject, keep: Callable[[ResponseObject], None]
) -> Iterator[str]:
    """The answer's replies (app/service.py `chat`) as events; `PENDING` passes through.
    `keep(response)` is called with the whole response before its last event."""
    numbers = itertools.count()

    def emit(kind: str, **fields) -> str:
        return event({"type": kind, "sequence_number": next(numbers), **fields}, kind)

    def dump(model) -> dict:
        return model.model_dump(by_alias=True)

    try:
        yield emit("response.created", response=dump(template))
        yield emit("response.in_progress", response=dump(template))
        message = OutputMessage(id=new_id("msg"), status="in_progress", content=[])
        where = {"item_id": message.id, "output_index": 0, "content_index": 0}
        held, shown, final = "", "", None  # held: text that may still turn out to be a tool call
        for reply in replies:
            if reply is PENDING:
                yield PENDING
                continue
            if reply.finish_reason:
                final = reply
                break
            text = reply.text
            if chat_plan.tools and (held or could_be_call(text)):
                held += text
                text, held = ("", held) if could_be_call(held) else (held, "")
            if text:
                if not shown:
                    yield emit("response.output_item.added", output_index=0, item=dump(message))
                    yield emit("response.content_part.added", **where, part=dump(OutputTextPart(text="")))
                shown += text
                yield emit("response.output_text.delta", **where, delta=text, logprobs=[])
        if final is None:  # cancelled: the client has gone
            return
        whole = final.text if final.replace else shown + held + final.text  # a guard refusal replaces it all
        answer = choice(0, whole, final, chat_plan.tools)
        items = output_items(answer)
        if answer.message.tool_calls:
            for index, call in enumerate(items):
                yield from _call_events(emit, dump, index, call)
        else:
            items[0].id = message.id
            if not shown:
                yield emit("response.output_item.added", output_index=0, item=dump(message))
                yield emit("response.content_part.added", **where, part=dump(OutputTextPart(text="")))
            if rest := whole[len(shown) :] if whole.startswith(shown) else final.text:
                yield emit("response.output_text.delta", **where, delta=rest, logprobs=[])
            yield emit("response.output_text.done", **where, text=whole, logprobs=[])
            yield emit("response.content_part.done", **where, part=dump(items[0].content[0]))
            yield emit("response.output_item.done", output_index=0, item=dump(items[0]))
        response = finished(template, answer, final.finish_reason, final.metrics, items)
        keep(response)
        kind = "response.completed" if response.status == "completed" else "response.incomplete"
        yield emit(kind, response=dump(response))
    except Exception as err:  # noqa: BLE001 - the stream's last word, whatever went wrong
        yield event(stream_error(err))
    finally:
        replies.close()  # closing the replies stops the generation (a dropped client)


def _call_events(emit, dump, index: int, call: FunctionCallItem) -> Iterator[str]:
    """One function call's events; its arguments come in one delta (the model's call is parsed
    whole, app/tool_calls.py)."""
    started = call.model_copy(update={"arguments": "", "status": "in_progress"})
    yield emit("response.output_item.added", output_index=index, item=dump(started))
    where = {"item_id": call.id, "output_index": index}
    yield emit("response.function_call_arguments.delta", **where, delta=call.arguments)
    yield emit("response.function_call_arguments.done", **where, name=call.name, arguments=call.arguments)
    yield emit("response.output_item.done", output_index=index, item=dump(call))
