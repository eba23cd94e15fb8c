"""Tool calls streamed as the model writes them, in OpenAI's delta shape: a call's first delta
carries its index, id, type and name with empty arguments, the next ones pieces of the arguments'
JSON text (clients such as instructor's partial streaming build the object from those pieces).

Used only where a grammar shapes the call (a forced call, or tools on "auto" with a response
format: app/tool_calls.py): then an answer that begins with `functools` is, token by token, a
prefix of `functools[{"name":"…","arguments":{…}},…]` in exactly that spelling (llguidance
keeps the schema's property order and, with `whitespace_flexible` off, puts no whitespace between
tokens; one space is tolerated too), so this scanner never has to take back what it sent.
Unshaped answers are still parsed whole at the end (app/api.py)."""

from __future__ import annotations

import re
import uuid

from app.chat_schema import FunctionCallDelta, ToolCallDelta
from app.tool_calls import PREFIX

HEAD = re.compile(r'\{"name": ?"([A-Za-z0-9_.-]{1,64})", ?"arguments": ?')


class CallStream:
    """Feed it the answer's text piece by piece; it returns the deltas each piece completes."""

    def __init__(self):
        self.text = ""  # all that was fed
        self.pending = ""  # text not yet turned into deltas
        self.state = "prefix"  # prefix -> between -> head -> arguments -> between -> head ...
        self.calls = 0
        self.depth, self.in_string, self.escaped = 0, False, False

    @property
    def started(self) -> bool:
        return self.state != "prefix"

    def feed(self, text: str) -> list[ToolCallDelta]:
        self.text += text
        self.pending += text
        deltas = []
        while self.pending and (delta := self._step()) is not None:
            if delta is not True:
                deltas.append(delta)
        return deltas

    def _step(self):
        """Consumes what it can of `pending`: a delta, True (consumed, nothing to send) or None (wait)."""
        if self.state == "prefix":
            head = self.pending.lstrip()
            if len(head) < len(PREFIX):
                return None
            self.pending, self.state = head[len(PREFIX) :], "between"
            return True
        if self.state == "between":  # the list's brackets, a call's closing brace, the commas
            rest = self.pending.lstrip("[, }]")
            self.pending, consumed = rest, len(rest) < len(self.pending)
            if rest.startswith("{"):
                self.state = "head"
                return True
            return True if consumed else None
        if self.state == "head":
            match = HEAD.match(self.pending)
            if match is None:
                return None
            self.pending, self.state = self.pending[match.end() :], "arguments"
            self.calls += 1
            return ToolCallDelta(
                index=self.calls - 1,
                id=f"call_{uuid.uuid4().hex[:24]}",
                type="function",
                function=FunctionCallDelta(name=match.group(1), arguments=""),
            )
        return self._arguments()

    def _arguments(self) -> ToolCallDelta:
        """The arguments' text up to the end of their JSON value (or of what has come so far)."""
        end = len(self.pending)
        for i, char in enumerate(self.pending):
            if self.in_string:
                self.escaped, self.in_string = (False, True) if self.escaped else (char == "\\", char != '"')
            elif char == '"':
                self.in_string = True
            elif char in "{[":
                self.depth += 1
            elif char in "}]":
                self.depth -= 1
                if self.depth == 0:
                    end = i + 1
                    self.state = "between"
                    break
        piece, self.pending = self.pending[:end], self.pending[end:]
        return ToolCallDelta(index=self.calls - 1, function=FunctionCallDelta(arguments=piece))
