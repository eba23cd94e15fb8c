"""The seam for the model family: what is Phi-4-multimodal's own, in one place.

- `ADAPTERS`, the LoRA adapter table: each adapter's name, its checkpoint folder, the input kinds
  that select it and its priority when several match, and the released rank. The router, the
  loader, the API's model names, the remote backend, `phi4mm doctor` and the tiny checkpoint read it when
  called (never a copy made at import), so adding an adapter is one row here.
- `PHI4`, the model's spec and hooks: the class that loads it, its chat template, its media token
  ids, the long-RoPE switch, the modules kept in full precision, the output head, and what the
  engine does to the loaded model (each audio clip encoded alone; long-RoPE's frequencies built
  before compiling).

A second model family would be a second table and a second such object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from engine.model_config import END_TOKENS

if TYPE_CHECKING:  # the table stays light to import: app/ reads it for model names
    import torch

# The chat template, as transformers' own processor tests give the native processor (the tiny
# checkpoint ships it; a checkpoint that brings none is rendered with it). Its `tools` branch is
# never used: engine/prompt_prep.py says why.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif content['type'] == 'audio' %}{{ '<|audio|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}{% endif %}"
    "{{ '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)

INPUT_KINDS = ("image", "video", "audio")  # what a conversation's media parts are (engine/router.py)


@dataclass(frozen=True)
class AdapterSpec:
    name: str  # PEFT's name for it, the `adapter` of every answer, and the API `model` that forces it
    folder: str  # its subfolder of the checkpoint
    selected_by: frozenset[str] = frozenset()  # INPUT_KINDS that pick it; none: only naming it does
    priority: int = 0  # when the conversation holds inputs that pick several, the highest wins
    released_rank: int | None = None  # the released adapter's LoRA rank (alpha is twice it)


# Released adapters: vision r=256 (alpha 512), speech r=320 (alpha 640). An image or video with
# audio goes to vision.
ADAPTERS: tuple[AdapterSpec, ...] = (
    AdapterSpec("vision", "vision-lora", frozenset({"image", "video"}), priority=20, released_rank=256),
    AdapterSpec("speech", "speech-lora", frozenset({"audio"}), priority=10, released_rank=320),
)


def adapter_specs() -> tuple[AdapterSpec, ...]:
    """The table as it is now (a test may extend it)."""
    return ADAPTERS


def adapter_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in ADAPTERS)


def adapter_for(kinds: Iterable[str]) -> str | None:
    """The adapter the conversation's input kinds select (the highest priority); None: no adapter."""
    kinds = set(kinds)
    chosen = [spec for spec in ADAPTERS if spec.selected_by & kinds]
    return max(chosen, key=lambda spec: spec.priority).name if chosen else None


class Phi4Family:
    """Phi-4-multimodal as transformers' native classes hold it (never remote code)."""

    end_tokens = END_TOKENS
    chat_template = CHAT_TEMPLATE  # for a checkpoint that brings none (engine/engine.py)
    # The vision/audio encoders and their projectors (`embed_tokens_extend`) and the output head
    # stay in full precision when quantizing; matched from the start of the module name.
    full_precision_modules = ("model.embed_tokens_extend", "lm_head")

    def load_class(self):
        from transformers import Phi4MultimodalForCausalLM

        return Phi4MultimodalForCausalLM

    def media_token_ids(self, config) -> list[int]:
        """The media placeholders' ids: image, then audio."""
        return [config.vision_config.image_token_id, config.audio_config.audio_token_id]

    def media_tokens(self, processor, config) -> list[tuple[str, str, int]]:
        """(kind, the processor's placeholder, the config's id) for each media placeholder."""
        placeholders = (processor.image_token, processor.audio_token)
        return list(zip(("image", "audio"), placeholders, self.media_token_ids(config)))

    def longrope_switch(self, config) -> int | None:
        """The length at which long-RoPE's long factors take over; None: no long-RoPE."""
        rope = config.rope_parameters or {}
        return config.original_max_position_embeddings if rope.get("rope_type") == "longrope" else None

    def output_head(self, model) -> torch.nn.Module:
        return model.lm_head

    def prepare(self, model) -> None:
        """Once per loaded model, before serving (idempotent): each audio clip encoded alone
        (engine/audio_clips.py: transformers' encoder fails on two clips once one passes 40 s)."""
        from engine.audio_clips import encode_each_clip_alone

        encode_each_clip_alone(model)

    def prepare_for_compile(self, model, dtype: torch.dtype, device: torch.device) -> None:
        """long-RoPE builds its long-factor frequencies on first use, which a graph cannot trace: now."""
        import torch

        with torch.no_grad():
            position = torch.zeros(1, 1, dtype=torch.long, device=device)
            model.model.rotary_emb(torch.zeros(1, dtype=dtype, device=device), position)


PHI4 = Phi4Family()
