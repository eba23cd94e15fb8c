"""Facts about the released model's format that the engine, the tiny checkpoint and the
benchmarks share: special tokens, chat template, LoRA layout, and the full-size configuration.
"""

from __future__ import annotations

DEFAULT_MODEL = "microsoft/Phi-4-multimodal-instruct"
# The hub's main branch holds remote-code weights; this PR holds the native-format ones that
# transformers' own tests load.
DEFAULT_REVISION = "refs/pr/70"

ADAPTER_FOLDERS = {"vision": "vision-lora", "speech": "speech-lora"}

# The released tokenizer's control tokens (ids differ in the tiny checkpoint; names are the contract).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|image|>",
    "<|audio|>",
    "<|tool|>",
    "<|/tool|>",
)
END_TOKENS = ("<|end|>", "<|endoftext|>")

# The native processor's chat template, as transformers' own processor tests use it.
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

# LoRA sits on every decoder linear layer. The audio encoder also has `o_proj`/`down_proj`
# modules, so the pattern is anchored on the decoder's `model.layers.N`.
LORA_TARGET_MODULES = (
    r"model\.layers\.\d+\.(self_attn\.(qkv_proj|o_proj)|mlp\.(gate_up_proj|down_proj))"
)
# Released adapters: vision r=256 (alpha 512), speech r=320 (alpha 640).
RELEASED_LORA_RANK = {"vision": 256, "speech": 320}


def decoder_lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGET_MODULES,
        task_type="CAUSAL_LM",
    )


def phi4_config(text: dict, vision: dict, audio: dict, *, vocab_size: int, end_ids: list[int],
                image_token_id: int, audio_token_id: int, long_factor_step: float = 0.0):
    """A Phi4MultimodalConfig with the released model's fixed choices: tied embeddings, a 128K
    window with long-RoPE past the original 4,096 tokens, and 25 % of each head's dims without
    rotary. `long_factor_step` > 0 makes the long factors differ from the short ones, so a test
    can see the switch."""
    from transformers import Phi4MultimodalConfig

    partial_rotary_factor = 0.75
    n_factors = int(text["hidden_size"] // text["num_attention_heads"] * partial_rotary_factor) // 2
    return Phi4MultimodalConfig(
        vocab_size=vocab_size,
        **text,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
        original_max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": 10000.0,
            "partial_rotary_factor": partial_rotary_factor,
            "short_factor": [1.0] * n_factors,
            "long_factor": [1.0 + long_factor_step * i for i in range(n_factors)],
            "original_max_position_embeddings": 4096,
        },
        bos_token_id=end_ids[0],
        pad_token_id=end_ids[0],
        eos_token_id=end_ids,
        vision_config={**vision, "image_token_id": image_token_id},
        audio_config={**audio, "audio_token_id": audio_token_id},
    )


def full_size_config(image_token_id: int = 200010, audio_token_id: int = 200011, end_ids=(199999, 200020)):
    """The released model's architecture (report section 2.1), for meta-device checks and the
    random-weight GPU benchmarks (which pass the tiny tokenizer's ids). transformers' bare
    `Phi4MultimodalConfig()` differs: it has 32 query heads and untied embeddings. Vision and
    audio encoders are transformers' defaults, which are the released ones."""
    text = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                num_attention_heads=24, num_key_value_heads=8)
    return phi4_config(text, {}, {}, vocab_size=200064, end_ids=list(end_ids),
                       image_token_id=image_token_id, audio_token_id=audio_token_id)
