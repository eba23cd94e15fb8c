"""The conversation service: the one place every request passes through. UI, API and CLI
call it and nothing else, so they all get the same safety behaviour:

    input guard -> system mitigations (+ the user's system prompt after them) -> engine.stream
    -> output guard (before anything is displayed) -> replies
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator

from core.errors import InvalidRequest
from core.settings import Settings
from engine.backends import open_engine
from engine.chat_engine import OpenStream
from engine.counters import Tally
from engine.request import PENDING, GenerationRequest, Metrics, SamplingParams, TokenLogprob
from engine.router import choose_adapter
from media.parts import AudioPart, ImagePart, Message, TextPart, VideoPart
from prompts import tasks
from safety.input_guard import InputLimits, InputRejected, check_input
from safety.mitigations import MitigationPolicy, system_prompt
from safety.output_guard import GuardedText, GuardPolicy, Verdict

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """What a UI, API or CLI may display: text to append, or (replace=True) the whole answer."""

    text: str
    adapter: str = "base"
    replace: bool = False
    finish_reason: str | None = None  # stop | length | cancelled | content_filter
    metrics: Metrics | None = None
    blocked: str | None = None  # the output-guard category that stopped the answer
    override_attempt: bool = False  # the input guard saw an attempt to override the system prompt
    logprobs: list[TokenLogprob] | None = None  # the tokens behind this text, when the request asked


@dataclass
class Answer:
    """A reply stream added up: its displayable text so far (a guard refusal replaces what came
    before), its tokens' logprobs when they were asked for, and its last reply."""

    text: str = ""
    logprobs: list[TokenLogprob] = dataclasses.field(default_factory=list)
    final: Reply | None = None

    def add(self, reply: Reply) -> "Answer":
        if reply.replace:
            self.text, self.logprobs = "", []
        self.text += reply.text
        self.logprobs += reply.logprobs or []
        self.final = reply
        return self


def collect(replies) -> str:
    """The displayable text of a reply stream."""
    answer = Answer()
    for reply in replies:
        answer.add(reply)
    return answer.text


class ConversationService:
    def __init__(
        self,
        engine,
        mitigations: MitigationPolicy = MitigationPolicy(),
        guard: GuardPolicy | None = None,
        input_limits: InputLimits = InputLimits(),
        on_finish: Callable[[Reply], None] | None = None,
    ):
        self.engine = engine
        # called once per generation with its last reply (a closed stream: finish_reason "cancelled")
        self.on_finish = on_finish or (lambda reply: None)
        self.mitigations = mitigations
        self.guard = guard if guard is not None else GuardPolicy()
        self.input_limits = input_limits
        # for /metrics, counted from every request's thread at once
        self._blocked = Tally()  # output-guard categories seen
        self._overrides = Tally()  # attempts to override the system prompt
        mitigations.warn_if_weakened()

    @property
    def blocked_counts(self) -> Counter[str]:
        return self._blocked.snapshot()

    @property
    def override_attempts(self) -> int:
        return self._overrides.total()

    def adapter_for(self, messages: list[Message], forced: str | None = None) -> str:
        """The LoRA adapter that answers `messages` (`forced`, else engine/router.py's rule), for a
        caller that names it before the answer comes (the API's X-Phi4mm-Adapter header)."""
        return forced or choose_adapter(messages)

    def build_request(
        self,
        messages: list[Message],
        params: SamplingParams,
        max_crops: int | None = None,
        cancel: threading.Event | None = None,
        tools: str | None = None,
        adapter: str | None = None,
        **tool_use,
    ) -> tuple[GenerationRequest, set[str], bool]:
        """(the request the engine will run, the conversation's media, override attempt?).
        `tools`: the JSON tool list (app/tool_calls.py) and `tool_use` how to use it (tool_choice,
        parallel_tool_calls: GenerationRequest's fields, as is `on_token`, for a caller that is told
        of each token instead of waiting for it); `adapter`: one the caller forces."""
        for i, m in enumerate(messages):  # its text joins our system prompt: media would be dropped unseen
            if m.role == "system" and not all(isinstance(p, TextPart) for p in m.parts):
                raise InvalidRequest(
                    "A system message carries text only; send images, audio and video in a user message.",
                    param=f"messages[{i}]",
                )
        user_system = "\n\n".join(p.text for m in messages if m.role == "system" for p in m.parts)
        turns = [m for m in messages if m.role != "system"]
        parts = [p for m in turns for p in m.parts]
        count = lambda kind: sum(isinstance(p, kind) for p in parts)  # noqa: E731
        try:
            check = check_input(
                user_system,
                ["".join(p.text for p in m.parts if isinstance(p, TextPart)) for m in turns],
                images=count(ImagePart),
                audio_clips=count(AudioPart),
                videos=count(VideoPart),
                limits=self.input_limits,
            )
        except InputRejected as err:
            raise InvalidRequest(str(err), param="messages") from None
        override = check.override_attempt
        if override:
            self._overrides.add()
        heard = count(AudioPart) or any(isinstance(p, VideoPart) and p.soundtrack is not None for p in parts)
        media = ({"audio"} if heard else set()) | ({"visual"} if count(ImagePart) + count(VideoPart) else set())
        system = system_prompt(self.mitigations, "audio" in media, "visual" in media, user_system, reinforce=override)
        request = GenerationRequest(
            [Message("system", [TextPart(system)])] + turns,
            params,
            cancel=cancel or threading.Event(),
            max_crops=max_crops,
            tools=tools,
            adapter=adapter,
            # an assistant message last is the answer's start (a prefill); a trailing system
            # message joins the system prompt above, and the answer is a new turn
            prefill=bool(messages) and messages[-1].role == "assistant",
            **tool_use,
        )
        return request, media, override

    def chat(
        self,
        messages: list[Message],
        params: SamplingParams | None = None,
        max_crops: int | None = None,
        cancel: threading.Event | None = None,
        tools: str | None = None,
        adapter: str | None = None,
        **tool_use,
    ) -> Iterator[Reply]:
        """The replies of one answer. Everything that can refuse the request (the input guard, and
        the engine's checks: media, limits, control tokens, grammar) runs on this call, before any
        reply is asked for: the API answers a refused stream with the same 4xx as any request.
        The call does CPU work (media preprocessing): run it off an event loop."""
        request, media, override = self.build_request(
            messages, params or SamplingParams(), max_crops, cancel, tools, adapter, **tool_use
        )
        stream = self.engine.stream(request)
        return OpenStream(self._replies(request, stream, media, override), stream)

    def _replies(self, request: GenerationRequest, stream, media: set[str], override: bool) -> Iterator[Reply]:
        guarded = GuardedText(self.guard, media)
        final, started, logprobs = None, False, []  # logprobs: of tokens whose text is not out yet
        try:
            for chunk in stream:
                started = True
                if chunk is PENDING:  # nothing ready yet (GenerationRequest.on_token)
                    yield PENDING
                    continue
                logprobs += chunk.logprobs or []
                verdict = guarded.feed(chunk.text)
                if not verdict.blocked and chunk.finish_reason:
                    end = guarded.finish()
                    verdict = Verdict(verdict.release + end.release, end.blocked)
                if verdict.blocked:
                    request.cancel.set()  # stop generating at once; closing the stream frees the slot
                    self._blocked.add(verdict.blocked)
                    log.info("output guard blocked an answer: %s", verdict.blocked)
                    final = Reply(
                        self.guard.refusal,
                        chunk.adapter,
                        replace=True,
                        finish_reason="content_filter",
                        metrics=chunk.metrics,
                        blocked=verdict.blocked,
                        override_attempt=override,
                    )
                    yield final
                    return
                if verdict.release or chunk.finish_reason:
                    reply = Reply(
                        verdict.release,
                        chunk.adapter,
                        finish_reason=chunk.finish_reason,
                        metrics=chunk.metrics,
                        override_attempt=override,
                        logprobs=logprobs or None,
                    )
                    logprobs = []
                    if chunk.finish_reason:
                        final = reply
                    yield reply
        finally:
            stream.close()
            if started:  # requests refused before generating (bad media, too long) are not generations
                self.on_finish(
                    final or Reply("", request.adapter or choose_adapter(request.messages), finish_reason="cancelled")
                )

    def answer(self, messages: list[Message], params: SamplingParams | None = None, **kwargs) -> tuple[str, Reply]:
        """The whole displayable answer at once, and the final reply (finish reason, metrics, and
        every token's logprobs when asked for)."""
        answer = Answer()
        for reply in self.chat(messages, params, **kwargs):
            answer.add(reply)
        final = answer.final
        if final is not None and answer.logprobs:
            final = dataclasses.replace(final, logprobs=answer.logprobs)
        return answer.text, final

    def understand(
        self, audio: AudioPart, task: str, max_new_tokens: int | None = None, cancel: threading.Event | None = None
    ) -> Iterator[Reply]:
        """Audio understanding (prompts.tasks.AUDIO_TASKS): the sounds, the music, or the spoken
        question answered. The spoken question's prompt is the audio alone (an empty text)."""
        if task not in tasks.AUDIO_TASKS:
            raise InvalidRequest(
                f"Unknown audio task {task!r}; use one of {', '.join(tasks.AUDIO_TASKS)}.", param="task"
            )
        prompt = tasks.AUDIO_TASKS[task][1]
        parts = [audio, TextPart(prompt)] if prompt else [audio]
        return self.chat([Message("user", parts)], SamplingParams(max_new_tokens=max_new_tokens or 512), cancel=cancel)

    def transcribe(
        self,
        audio: AudioPart,
        translate_to: str | None = None,
        cot: bool = False,
        max_new_tokens: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[Reply]:
        """ASR, speech translation, or both with <sep> (split with prompts.tasks)."""
        if cot and not translate_to:
            raise InvalidRequest("Chain-of-thought translation needs a target language.", param="translate_to")
        try:
            if translate_to:
                prompt = tasks.transcribe_and_translate(translate_to) if cot else tasks.translate(translate_to)
            else:
                prompt = tasks.ASR
        except ValueError as err:
            raise InvalidRequest(str(err), param="translate_to") from None
        budget = max_new_tokens or tasks.transcript_token_budget(audio.seconds) * (2 if cot else 1)
        return self.chat(
            [Message("user", [audio, TextPart(prompt)])], SamplingParams(max_new_tokens=budget), cancel=cancel
        )


def open_service(settings: Settings, on_finish=None, engine=None) -> ConversationService:
    """The service over `engine`, or over the engine the settings describe."""
    return ConversationService(
        engine or open_engine(settings), MitigationPolicy.from_settings(settings), on_finish=on_finish
    )
