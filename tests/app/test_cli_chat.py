"""`phi4mm chat` as a user runs it: a subprocess on a pseudo-terminal (so Ctrl-C and Ctrl-D are
the terminal's own keys), against the tiny checkpoint."""

from __future__ import annotations

import os
import pty
import re
import select
import sys

import pytest

from tooling.inputs import make_photo

pytestmark = pytest.mark.slow  # an interactive phi4mm chat subprocess

METRICS = re.compile(r"adapter=(\w+) prompt_tokens=(\d+) completion_tokens=(\d+)")


class Terminal:
    """A child process on a pty, read until a pattern shows."""

    def __init__(self, argv: list[str], env: dict):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, as in a shell
            os.execve(sys.executable, [sys.executable, *argv], env)
        self.seen, self.read_to = "", 0

    def read_until(self, pattern: str, timeout: float = 120) -> str:
        """The output after the last match, up to and including the next `pattern` (a regex)."""
        start = self.read_to
        while not (match := re.compile(pattern).search(self.seen, start)):
            ready, _, _ = select.select([self.fd], [], [], timeout)
            assert ready, f"no {pattern!r} in:\n{self.seen[-3000:]}"
            try:
                chunk = os.read(self.fd, 4096).decode(errors="replace")
            except OSError:  # the child closed the terminal
                chunk = ""
            assert chunk, f"ended before {pattern!r}:\n{self.seen[-3000:]}"
            self.seen += chunk
        self.read_to = match.end()
        return self.seen[start : match.end()]

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_code(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


@pytest.fixture
def chat(tiny_checkpoint, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1", "TERM": "dumb"}
    argv = ["-m", "app.cli", "chat", "--model", str(tiny_checkpoint), "--max-new-tokens", "500", "--verbose"]
    terminal = Terminal(argv, env)
    yield terminal
    try:
        os.kill(terminal.pid, 9)
        terminal.exit_code()
    except (ProcessLookupError, ChildProcessError, OSError):
        pass


def turn(chat: Terminal, text: str) -> re.Match:
    chat.send(text + "\r")
    return METRICS.search(chat.read_until(r"adapter=\w+ prompt_tokens=\d+ completion_tokens=\d+"))


def test_chat_keeps_history_attaches_media_stops_and_ends(chat, tmp_path):
    make_photo().save(tmp_path / "photo.jpg")
    chat.read_until("you> ")
    first = turn(chat, "Hello there")
    chat.read_until("you> ")
    second = turn(chat, "And again")
    # the conversation went with the second message: its prompt holds the first turn and its answer
    assert int(second.group(2)) > int(first.group(2)) + int(first.group(3))
    assert first.group(1) == second.group(1) == "base"

    chat.read_until("you> ")
    chat.send(f"/image {tmp_path / 'photo.jpg'}\r")
    chat.read_until("attached .*photo.jpg to your next message")
    chat.read_until("you> ")
    assert turn(chat, "What is in it?").group(1) == "vision"

    chat.read_until("you> ")
    chat.send("/clear\r")
    chat.read_until(r"\(conversation cleared\)")
    chat.read_until("you> ")
    chat.send("Hello there\r")
    chat.read_until(r"\r\n.")  # the answer has begun streaming
    chat.send("\x03")  # Ctrl-C, as the terminal sends it: SIGINT to the chat
    chat.read_until(r"\[stopped\]")
    chat.read_until("you> ")  # the chat goes on, and a stopped answer joins the conversation
    assert turn(chat, "Hi").group(1) == "base"

    chat.read_until("you> ")
    chat.send("/image /nonexistent.png\r")
    chat.read_until("phi4mm: .*nonexistent")
    chat.read_until("you> ")
    chat.send("\x04")  # Ctrl-D at an empty prompt
    assert chat.exit_code() == 0
    assert "Traceback" not in chat.seen
