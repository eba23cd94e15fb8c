"""Prompt preparation: typed messages -> the chat template's text -> the processor's inputs, with
every check that can refuse a request (control tokens, the media-token and context limits). Runs
in the caller's thread, before the request reaches the decode loop (engine/scheduler.py)."""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from typing import Callable, Iterator

import torch

from core.cpu_threads import alone
from core.errors import InvalidRequest, PromptTooLong
from engine.decode import PreparedPrompt
from engine.prefix_cache import media_digest
from engine.prompt_items import prompt_items
from engine.request import GenerationRequest
from engine.router import choose_adapter
from media.limits import SAMPLE_RATE
from media.parts import Message


def joined_items(parts) -> Iterator[tuple[str, object]]:
    """`prompt_items` with adjacent texts joined into one: the template concatenates them anyway,
    and a control token split across parts (`"<|en"`, `"d|>"`) must be seen whole to be neutralised."""
    texts = []
    for kind, item in prompt_items(parts):
        if kind == "text":
            texts.append(item)
            continue
        if texts:
            yield "text", "".join(texts)
            texts = []
        yield kind, item
    if texts:
        yield "text", "".join(texts)


def to_chat(messages: list[Message], tools: str | None, text_of: Callable[[str], str]) -> tuple[list[dict], list, list]:
    """Typed messages -> (template input with placeholders in order, images, audio clips). Every
    text that is not ours passes through `text_of`: the engine's neutraliser for the prompt, or
    one that empties it for the prompt's skeleton (engine/control_tokens.py). The tool list closes
    the first system turn inside `<|tool|>…<|/tool|>` (Phi-4-mini's model card), after its text;
    the tags are ours, the list's own text is not. It goes in as a text part, not as the
    template's `tools` key: that branch of the template writes `<|/tool|><|end|>` and then the
    turn's own `<|end|>`, ending the system turn twice."""
    chat, media = [], {"image": [], "audio": []}
    for message in messages:
        content = []
        for kind, item in joined_items(message.parts):
            if kind == "text":
                content.append({"type": "text", "text": text_of(item)})
            else:
                content.append({"type": kind})
                media[kind].append(item)
        if tools and message.role == "system":
            content.append({"type": "text", "text": f"<|tool|>{text_of(tools)}<|/tool|>"})
            tools = None
        chat.append({"role": message.role, "content": content})
    return chat, media["image"], media["audio"]


def _left_out(text: str) -> str:
    return ""


class PromptPreparation:
    """The engine's prompt part (a mixin of engine/engine.py's Engine): it reads the engine's
    processor, tokenizer, chat_template, controls, limits, context_window, device, dtype and
    whether its scheduler keeps prompt beginnings."""

    def render(self, chat: list[dict], prefill: bool = False) -> str:
        """The prompt, by the chat template (the one renderer); with `prefill` the last (assistant)
        message is left open for the answer to continue."""
        return self.processor.apply_chat_template(
            chat,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )

    def prepare(self, request: GenerationRequest) -> PreparedPrompt:
        # on a CPU, the processor's tensor work on this thread alone: the decode loop's thread keeps
        # the process's one team of CPU threads (core/cpu_threads.py); a GPU's loop hardly uses them
        with alone() if self.device.type == "cpu" else nullcontext():
            return self._prepared(request)

    def _prepared(self, request: GenerationRequest) -> PreparedPrompt:
        request.validate()
        chat, images, audios = to_chat(request.messages, request.tools, self.controls.neutralise)
        # the same chat with no user text: what the template alone places (a few dozen tokens)
        skeleton = self.render(to_chat(request.messages, request.tools, _left_out)[0], request.prefill)
        prompt = self.render(chat, request.prefill)
        kwargs = {"images": images, "dynamic_hd": request.max_crops or self.limits.max_crops} if images else {}
        if audios:
            kwargs.update(audio=audios, sampling_rate=SAMPLE_RATE)
        # Within the model's reach, an answer is clipped to the room the prompt leaves (below); past
        # it, the number is a mistake, and clipping it would quietly run the longest answer there is
        if request.params.max_new_tokens > self.model.config.max_position_embeddings:
            raise InvalidRequest(
                f"`max_tokens` is {request.params.max_new_tokens}; this model's whole context "
                f"window is {self.model.config.max_position_embeddings} tokens.",
                param="max_tokens",
            )
        self.controls.check_text(prompt, skeleton)
        inputs = self.processor(text=prompt, return_tensors="pt", return_text_replacement_offsets=True, **kwargs)
        self.controls.check_ids(
            inputs["input_ids"], self.tokenizer(skeleton, return_tensors="pt")["input_ids"], self._expanded(inputs)
        )
        prompt_tokens = int(inputs["input_ids"].shape[1])
        is_media = torch.isin(inputs["input_ids"][0], torch.tensor(self.media_token_ids))
        media_tokens = int(is_media.sum())
        if media_tokens > self.limits.max_media_tokens:
            raise PromptTooLong(
                f"The images and audio of this conversation come to {media_tokens} tokens; this server takes "
                f"up to {self.limits.max_media_tokens} per request. Send fewer or smaller photos, a lower crop "
                "budget, or shorter audio.",
                param="messages",
            )
        if prompt_tokens >= self.context_window:
            raise PromptTooLong(
                f"The prompt is {prompt_tokens} tokens long (text plus image and audio tokens), but the "
                f"context window holds {self.context_window}. Shorten the conversation or send less media.",
                param="messages",
            )
        inputs = inputs.to(device=self.device, dtype=self.dtype)  # casts only the float tensors
        keeps = self.scheduler.prefixes.tokens > 0  # the digest costs ~6 ms a megapixel: only for the cache
        inputs.pop("num_img_tokens", None)
        return PreparedPrompt(
            inputs=dict(inputs),
            adapter=request.adapter or choose_adapter(request.messages),
            prompt_tokens=prompt_tokens,
            max_new_tokens=min(request.params.max_new_tokens, self.context_window - prompt_tokens),
            media_end=int(is_media.nonzero().max()) + 1 if media_tokens else 0,
            shared_prefix=self._shared_prefix(chat, inputs["input_ids"][0]),
            media_key=media_digest(images, audios, kwargs.get("dynamic_hd")) if media_tokens and keeps else "",
        )

    def _shared_prefix(self, chat: list[dict], ids: torch.Tensor) -> int:
        """How many leading tokens the prompt shares with its system turn rendered alone: what other
        requests with the same system prompt share (engine/prefix_cache.py). Any common run of ids
        is safe to share (a token's keys and values depend only on the tokens before it); this
        one ends where the turn does (the template alone adds an end-of-text token after it).
        Never the whole prompt: its last token's logits are needed. Text only: a system message
        carries no media (GenerationRequest.validate)."""
        if not chat or chat[0]["role"] != "system":
            return 0
        alone = self.processor.apply_chat_template(chat[:1], chat_template=self.chat_template, tokenize=False)
        turn = torch.tensor(self.tokenizer(alone)["input_ids"][: len(ids) - 1], dtype=ids.dtype)
        return int((ids[: len(turn)].cpu() == turn).long().cumprod(0).sum())

    def _expanded(self, inputs) -> Counter:
        """How many tokens the processor put in place of the media placeholders, by placeholder
        (and takes that bookkeeping out of the model's inputs)."""
        expanded = Counter({self.processor.image_token: 0, self.processor.audio_token: 0})
        for replaced in inputs.pop("text_replacement_offsets")[0]:
            expanded[replaced["text"]] += replaced["replacement"].count(replaced["text"])
        return expanded
