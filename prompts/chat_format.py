"""Render a conversation into Phi-4-multimodal's chat format, media placeholders in order:

    <|system|>…<|end|><|user|><|image|><|audio|>question<|end|><|assistant|>

The native processor later expands each `<|image|>` / `<|audio|>` into that input's tokens.
This is the pure-Python twin of the checkpoint's chat template: the engine renders with the
checkpoint's own template, and with this when a checkpoint brings none; a test keeps the two
identical."""

from __future__ import annotations

PLACEHOLDERS = {"image": "<|image|>", "audio": "<|audio|>"}


def render_content(content) -> str:
    """A string, or parts `{"type": "text", "text"}` / `{"type": "image"}` / `{"type": "audio"}`."""
    if isinstance(content, str):
        return content
    out = []
    for part in content:
        kind = part["type"]
        out.append(part["text"] if kind == "text" else PLACEHOLDERS[kind])
    return "".join(out)


def render(messages: list[dict], add_generation_prompt: bool = True, continue_final_message: bool = False) -> str:
    """`continue_final_message`: the last message stays open (no `<|end|>`), as transformers' option
    of that name leaves it, for the answer to continue it."""
    text = "".join(f"<|{m['role']}|>{render_content(m['content'])}<|end|>" for m in messages)
    if continue_final_message:
        return text[: -len("<|end|>")]
    return text + ("<|assistant|>" if add_generation_prompt else "<|endoftext|>")
