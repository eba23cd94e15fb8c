"""`phi4mm chat`: a conversation in the terminal. Each answer streams as it comes; the whole
conversation goes with every turn (the same conversation service as `ask`, the server and the web
app). `/image PATH`, `/audio PATH` and `/video PATH` attach a file to the next message; Ctrl-C
stops an answer (the chat goes on), Ctrl-D ends the chat."""

from __future__ import annotations

import sys
import threading

from app.cli_ask import load_media, sampling_params
from app.cli_common import metrics_line, open_service, settings_from
from core.errors import Phi4mmError

HELP = """\
  type a message and press Enter; the conversation continues until /clear
  /image PATH   attach an image to your next message (repeatable)
  /audio PATH   attach an audio clip to your next message (repeatable)
  /video PATH   attach a video (its frames and its sound) to your next message
  /clear        forget the conversation and any attachments
  /help         this list
  Ctrl-C stops an answer; Ctrl-D (at an empty prompt) ends the chat"""

ATTACH = {"/image": "images", "/audio": "audio", "/video": "videos"}


class TerminalChat:
    def __init__(self, service, settings, params, system: str | None, verbose: bool):
        from media.limits import MediaLimits

        self.service, self.params, self.verbose = service, params, verbose
        self.max_crops = settings.max_crops
        self.limits = MediaLimits.from_settings(settings)
        self.system = system
        self.clear()

    def clear(self) -> None:
        from media.parts import Message, TextPart

        self.history = [Message("system", [TextPart(self.system)])] if self.system else []
        self.attached: dict[str, list[str]] = {kind: [] for kind in ATTACH.values()}

    def command(self, line: str) -> None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ATTACH and arg:
            try:  # a file that cannot be read is said now, not after the next message is typed
                load_media(self.limits, **{ATTACH[name]: [arg]})
            except Phi4mmError as err:
                print(f"phi4mm: {err}", file=sys.stderr)
                return
            self.attached[ATTACH[name]].append(arg)
            print(f"(attached {arg} to your next message)")
        elif name == "/clear":
            self.clear()
            print("(conversation cleared)")
        elif name == "/help":
            print(HELP)
        else:
            print(f"phi4mm: unknown command {line!r}; /help lists them", file=sys.stderr)

    def turn(self, text: str) -> None:
        """One message and its answer; the answer, whole or stopped, joins the conversation."""
        from app.service import Answer
        from media.parts import Message, TextPart

        parts = load_media(self.limits, **self.attached)
        if text or not parts:
            parts.append(TextPart(text))
        cancel = threading.Event()
        user = Message("user", parts)
        replies = self.service.chat(self.history + [user], self.params, max_crops=self.max_crops, cancel=cancel)
        answer = Answer()
        try:
            for reply in replies:
                sys.stdout.write(("\n" + reply.text) if reply.replace else reply.text)
                sys.stdout.flush()
                answer.add(reply)
        except KeyboardInterrupt:
            cancel.set()
            sys.stdout.write(" [stopped]")
        finally:
            replies.close()
        print()
        self.attached = {kind: [] for kind in ATTACH.values()}
        self.history += [user, Message("assistant", [TextPart(answer.text)])]
        if self.verbose and answer.final is not None and answer.final.metrics is not None:
            print(metrics_line(answer.final.metrics), file=sys.stderr)

    def run(self) -> int:
        import readline  # noqa: F401 - line editing and history for input()

        print("phi4mm chat: /help for commands, Ctrl-D to end")
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                print()
                return 0
            except KeyboardInterrupt:  # at the prompt: a fresh line, as a shell does
                print()
                continue
            if line.startswith("/"):
                self.command(line)
            elif line or any(self.attached.values()):
                try:
                    self.turn(line)
                except Phi4mmError as err:  # a bad file or a refused request: this turn only
                    print(f"phi4mm: {err}", file=sys.stderr)
                    self.attached = {kind: [] for kind in ATTACH.values()}


def cmd_chat(args) -> int:
    settings = settings_from(args, log_loading=False)
    params = sampling_params(args, settings)
    print(f"phi4mm: loading {settings.model}...", file=sys.stderr, flush=True)
    return TerminalChat(open_service(settings), settings, params, args.system, args.verbose).run()
