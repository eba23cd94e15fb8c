"""What the browser app calls: Gradio's payloads (file paths, microphone recordings, chat
history) in, the conversation service's replies out. `ui/` stays pure Gradio code."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import threading
import time
from typing import Iterator

import soundfile as sf

from app.live_meeting import LiveMeeting
from app.meeting import MeetingOptions, MeetingSummarizer
from app.service import Answer, ConversationService, Reply
from core.errors import InvalidRequest, MediaError, Overloaded
from core.settings import Settings
from engine.request import SamplingParams
from media.audio import load_audio
from media.images import load_image
from media.limits import MediaLimits
from media.parts import ImagePart, Message, TextPart
from media.video import load_video
from prompts import tasks
from ui.options import ChatOptions, Shown

LIVE_IDLE_SECONDS = 60  # a live meeting with no chunk for this long has lost its page


def metrics_line(reply: Reply) -> str:
    m = reply.metrics
    if m is None:
        return ""
    return (
        f"{m.adapter} adapter · first token {m.ttft_s * 1000:.0f} ms · "
        f"{m.tokens_per_s:.1f} tokens/s · {m.completion_tokens} tokens"
    )


class WebApp:
    def __init__(
        self, service: ConversationService, settings: Settings, upload_dirs: list[str], discard_chunk=os.remove
    ):
        self.service = service
        self.discard_chunk = discard_chunk  # removes a microphone chunk once read
        self.settings = settings
        self.limits = MediaLimits.from_settings(settings)
        # Every file an event hands us must lie in one of these (Gradio's upload cache): a path the
        # client names is never read otherwise, whatever Gradio itself lets through.
        self.upload_dirs = [os.path.realpath(d) for d in upload_dirs]
        self._meeting_cancels: dict[str, threading.Event] = {}  # browser session -> its running meeting
        self._live: dict[str, LiveMeeting] = {}  # browser session -> the meeting it is recording
        # (browser session, tab) -> its answer's cancel: Stop ends generation and the engine still sends
        # the last chunk, with the metrics of what was generated (Gradio's own cancel closes the stream
        # and loses them)
        self._answers: dict[tuple[str, str], threading.Event] = {}
        self._queued: dict[tuple[str, str], threading.Event] = {}  # the same for answers still in the queue

    def default_options(self) -> ChatOptions:
        s = self.settings
        return ChatOptions("", s.max_new_tokens, 0.0, 1.0, s.max_crops, s.video_frames)

    def stop_meeting(self, session: str) -> None:
        """Stop a session's meeting job; it returns what is finished, with a note of the rest."""
        cancel = self._meeting_cancels.get(session)
        if cancel is not None:
            cancel.set()

    def answer_queued(self, session: str, tab: str) -> None:
        """The page has sent a question that may wait in the queue: a Stop from now on stops it too."""
        self._queued[(session, tab)] = threading.Event()

    def stop_answer(self, session: str, tab: str) -> None:
        """Stop the answer a browser session's tab is streaming, or has queued; it ends as
        "cancelled", with the metrics of what was generated."""
        for cancel in (self._answers.get((session, tab)), self._queued.get((session, tab))):
            if cancel is not None:
                cancel.set()

    @contextlib.contextmanager
    def _answering(self, session: str, tab: str):
        """The cancel of one answer (the one made when it was queued, if it was), known to
        `stop_answer` while it runs; set at the end (Stop, a closed page) so generation always stops."""
        cancel = self._queued.pop((session, tab), None) or threading.Event()
        self._answers[(session, tab)] = cancel
        try:
            yield cancel
        finally:
            cancel.set()
            if self._answers.get((session, tab)) is cancel:
                del self._answers[(session, tab)]

    # -- inputs ------------------------------------------------------------------------------

    def uploaded(self, path: str) -> str:
        """`path` if a user uploaded it here; otherwise refused, before anything opens it."""
        real = os.path.realpath(path)
        if not any(os.path.commonpath([real, d]) == d for d in self.upload_dirs):
            raise MediaError("That file was not uploaded to this server; attach it again.")
        return real

    def file_part(self, path: str, video_frames: int | None = None):
        path = self.uploaded(path)
        kind = (mimetypes.guess_type(path)[0] or "").split("/")[0]
        if kind == "image":
            return ImagePart(load_image(path, self.limits))
        if kind == "video":
            return load_video(path, self.limits, frames=video_frames)
        return load_audio(path, self.limits)  # audio, or unknown: decoded by content, refused clearly

    def user_parts(self, text: str, files: list, video_frames: int | None = None) -> list:
        paths = [f if isinstance(f, str) else f.get("path") for f in files or []]
        parts = [self.file_part(p, video_frames) for p in paths if p]
        if text:
            parts.append(TextPart(text))
        return parts

    def history_messages(self, history: list[dict], video_frames: int | None = None) -> list[Message]:
        """Gradio's message history (as the page sent it, less what the page itself added: its
        metrics lines and its error notes) -> engine messages."""
        messages: list[Message] = []
        for turn in history:
            content = turn.get("content")
            items = content if isinstance(content, list) else [content]
            parts = []
            for item in items:
                if isinstance(item, dict) and item.get("type") == "text":
                    item = item.get("text", "")
                if isinstance(item, str):
                    parts.append(TextPart(item))
                elif (
                    isinstance(item, dict)
                    and turn["role"] == "user"
                    and (item.get("type") == "file" or item.get("path"))
                ):
                    parts.extend(self._earlier_file(item.get("file", item), video_frames))
            if messages and messages[-1].role == turn["role"]:
                messages[-1].parts.extend(parts)
            elif parts:
                messages.append(Message(turn["role"], parts))
        return messages

    def _earlier_file(self, file, video_frames):
        """A file from an earlier turn. One that could not be used was reported then; skipping it
        keeps one bad upload from breaking every later message of the conversation."""
        try:
            return self.user_parts("", [file], video_frames)
        except MediaError:
            return []

    # -- uses ------------------------------------------------------------------------------

    def stream_answer(
        self, messages: list[Message], options: ChatOptions, session: str = "", tab: str = "chat"
    ) -> Iterator[Shown]:
        """The answer so far after each reply, the last with its metrics line, which begins with
        what the newest message's media lost (a video's sound left out, say). `stop_answer(session,
        tab)` or closing the iterator (the browser going away) cancels generation."""
        notes = " · ".join(p.sound_left_out for p in messages[-1].parts if getattr(p, "sound_left_out", ""))
        if (options.system_prompt or "").strip():
            messages = [Message("system", [TextPart(options.system_prompt)])] + messages
        params = SamplingParams(
            max_new_tokens=int(options.max_new_tokens),
            temperature=float(options.temperature),
            top_p=float(options.top_p),
        )
        answer = Answer()
        with self._answering(session, tab) as cancel:
            for reply in self.service.chat(messages, params, max_crops=int(options.max_crops), cancel=cancel):
                text, finished = answer.add(reply).text, " · ".join(filter(None, (notes, metrics_line(reply))))
                yield Shown(text, finished if reply.finish_reason else "", reply.finish_reason == "cancelled")

    def chat(
        self, text: str, files: list, history: list[dict], options: ChatOptions, session: str = ""
    ) -> Iterator[Shown]:
        if not text.strip() and not any(files or []):
            raise InvalidRequest("Type a message or attach a file first.", param="message")
        messages = self.history_messages(history, options.video_frames)
        messages.append(Message("user", self.user_parts(text, files, options.video_frames)))
        yield from self.stream_answer(messages, options, session, "chat")

    def photo_by_voice(
        self, image_path: str | None, audio_path: str | None, question: str, options: ChatOptions, session: str = ""
    ) -> Iterator[Shown]:
        parts = [ImagePart(load_image(self.uploaded(image_path), self.limits))] if image_path else []
        if audio_path:
            parts.append(load_audio(self.uploaded(audio_path), self.limits))
        if question.strip():
            parts.append(TextPart(question.strip()))
        yield from self.stream_answer([Message("user", parts)], options, session, "photo")

    def speech(
        self, audio_path: str, language: str | None, cot: bool, task: str | None = None, session: str = ""
    ) -> Iterator[tuple[str, str, bool]]:
        """(transcript, translation, stopped) so far. Plain translation fills only the second; an audio
        understanding `task` (prompts.tasks.AUDIO_TASKS) fills the first with its answer. `stopped`:
        `stop_answer(session, "speech")` ended it."""
        audio = load_audio(self.uploaded(audio_path), self.limits, max_seconds=self.limits.max_task_audio_seconds)
        answer, stopped = Answer(), False
        with self._answering(session, "speech") as cancel:
            if task:
                for reply in self.service.understand(audio, task, cancel=cancel):
                    yield answer.add(reply).text, "", reply.finish_reason == "cancelled"
                return
            for reply in self.service.transcribe(audio, translate_to=language, cot=cot, cancel=cancel):
                text = answer.add(reply).text
                stopped = reply.finish_reason == "cancelled"
                if cot:
                    split = tasks.split_transcript_translation(text)
                    yield split.transcript, split.translation or "", stopped
                else:
                    yield ("", text, stopped) if language else (text, "", stopped)
        if cot and not stopped and (split := tasks.split_transcript_translation(answer.text)).translation is None:
            yield split.transcript, tasks.NO_TRANSLATION, False  # never silently empty

    def summarize(
        self,
        audio_path: str,
        instruction: str,
        fmt: str,
        length: int | None,
        unit: str,
        progress=lambda fraction, desc: None,
        session: str = "",
    ):
        """The meeting pipeline (one prompt up to 30 min, map-reduce past it) -> MeetingResult."""
        from media.audio_stream import load_long_audio

        progress(0.0, "Reading the recording")
        samples = load_long_audio(self.uploaded(audio_path), self.limits, self.limits.max_meeting_seconds)
        options = MeetingOptions(instruction or None, fmt, length or None, unit)

        def report(fraction, stage, left):
            progress(fraction, f"{stage}" + (f" (about {left:.0f} s left)" if left is not None else ""))

        cancel = self._meeting_cancels[session] = threading.Event()
        try:
            return MeetingSummarizer(self.service).run(samples, options, report, cancel)
        finally:
            self._meeting_cancels.pop(session, None)

    # -- live captions -----------------------------------------------------------------------

    def live_start(self, session: str) -> str:
        """A new recording for this browser session (one it had is dropped) -> the transcript so far."""
        self.live_close(session)
        # a page that vanished without saying so leaves its meeting idle: those go first
        for other, live in list(self._live.items()):
            if time.monotonic() - live.last_chunk > LIVE_IDLE_SECONDS:
                self.live_close(other)
        if len(self._live) >= self.settings.queue_size:
            raise Overloaded("Too many meetings are being recorded on this server; try again shortly.", 10)
        live = self._live[session] = LiveMeeting(
            MeetingSummarizer(self.service), MeetingOptions(), self.limits.max_meeting_seconds
        )
        return live.transcript()

    def live_feed(self, session: str, chunk_path: str) -> str | None:
        """One microphone chunk (a WAV file Gradio received) -> the transcript so far; None for a
        chunk with no meeting to join (one that trails Stop): it is not kept, and nothing changes.
        A chunk's file goes once it is read (an hour's meeting would leave 3,600 of them behind),
        through `discard_chunk`, which spares the page's own files: a client names the path."""
        path = self.uploaded(chunk_path)
        live = self._live.get(session)
        if live is None:
            return None
        try:
            samples, rate = sf.read(path, dtype="float32")
        except Exception:  # soundfile raises several kinds
            raise MediaError("The microphone sent audio that could not be read; record again.") from None
        finally:
            with contextlib.suppress(OSError):
                self.discard_chunk(path)
        live.feed(samples, rate)
        return live.transcript()

    def live_finish(self, session: str, instruction: str, fmt: str, length: int | None, unit: str):
        """Stop: the last segment transcribed and the summary made from the transcript -> MeetingResult."""
        live = self._live.pop(session, None)
        if live is None:
            raise MediaError("Nothing was recorded: press Record and speak, then Stop.")
        return live.finish(MeetingOptions(instruction or None, fmt, length or None, unit))

    def live_close(self, session: str) -> None:
        """The page went away (or records anew): its meeting stops, and nothing of it is kept."""
        live = self._live.pop(session, None)
        if live is not None:
            live.close()
