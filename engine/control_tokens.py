"""No control token from user text: the tokenizer's added tokens (`<|end|>`, `<|user|>`, the media
placeholders, the reserved ones) come only from the chat template.

Two layers. `neutralise` breaks every added token in text the user wrote with a zero-width space
(readable, but no longer the token); it runs on a message's adjacent text parts joined, because the
template joins them too and a token split across parts would otherwise form there. `check_text`
and `check_ids` then count, on the rendered prompt and on the final ids, every added token against
a skeleton of the same chat with all user text left out: only what the template placed may remain,
and each media placeholder must have become exactly the tokens the processor expanded it to. A
difference is the request's fault (400), never a crash in the processor or a forged turn.
"""

from __future__ import annotations

import re
from collections import Counter

import torch

from core.errors import InvalidRequest

ZERO_WIDTH_SPACE = "\u200b"


class ControlTokens:
    """The added tokens of one tokenizer; built once per engine."""

    def __init__(self, tokenizer):
        self.names = {i: token.content for i, token in tokenizer.added_tokens_decoder.items()}
        self.ids = torch.tensor(sorted(self.names))
        # longest first, so a token that starts another one cannot hide it
        contents = sorted(set(self.names.values()), key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, contents)))

    def neutralise(self, text: str) -> str:
        """`text` with every added token broken after its first character."""
        return self.pattern.sub(lambda m: m.group()[:1] + ZERO_WIDTH_SPACE + m.group()[1:], text)

    def check_text(self, prompt: str, skeleton: str) -> None:
        """Before the processor, which raises on a media placeholder it has no media for: the
        rendered prompt holds exactly the added tokens its skeleton holds."""
        found, placed = (Counter(self.pattern.findall(text)) for text in (prompt, skeleton))
        refuse_extra(found, placed)

    def count_ids(self, ids: torch.Tensor) -> Counter:
        """How often each added token's id occurs in `ids`, by token."""
        values, counts = torch.unique(ids[torch.isin(ids, self.ids)], return_counts=True)
        return Counter({self.names[v]: c for v, c in zip(values.tolist(), counts.tolist())})

    def check_ids(self, ids: torch.Tensor, skeleton_ids: torch.Tensor, expanded: Counter) -> None:
        """On the final ids: each added token as often as the skeleton has it, except the media
        placeholders, which the processor replaced by `expanded[token]` tokens in all."""
        placed = self.count_ids(skeleton_ids)
        for token, count in expanded.items():
            placed[token] = count
        refuse_extra(self.count_ids(ids), placed)


def refuse_extra(found: Counter, placed: Counter) -> None:
    """InvalidRequest naming a control token that `found` has more (or fewer) of than `placed`."""
    wrong = sorted(token for token in found.keys() | placed.keys() if found[token] != placed[token])
    if wrong:
        raise InvalidRequest(
            f"The message contains text that would act as the model's control token {wrong[0]}; "
            "such tokens are placed by the chat format only. Write it differently (for example with a "
            "space inside).",
            param="messages",
        )
