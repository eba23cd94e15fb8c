"""Facts about the released model's format that the engine, the tiny checkpoint and the
benchmarks share: special tokens, LoRA layout, and the full-size configuration. The adapters and
the chat template are engine/model_family.py's.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

# The released model's own config.json (original format; provenance in ../shared/reference/README.md),
# shipped as data: the ground truth our configs take their values from.
RELEASED_CONFIG_FILE = Path(__file__).parent / "reference" / "phi4mm-original-config.json"

# The hub's main branch holds remote-code weights; this PR holds the native-format ones that
# transformers' own tests load.
DEFAULT_REVISION = "refs/pr/70"

# The released tokenizer's control tokens (names are the contract; the tiny checkpoint puts them at
# the released ids below).
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
# Released token ids, from ../shared/reference/README.md (also the ids in config.json and
# generation_config.json, with a 200,064-entry vocabulary).
RELEASED_TOKEN_IDS = {"<|endoftext|>": 199999, "<|image|>": 200010, "<|audio|>": 200011, "<|end|>": 200020}
# A guess: not in the reference. Phi-4-mini's tokenizer as remembered, and as one public token
# handler for it hard-codes <|assistant|>, <|user|> and <|tool|>. Only the tiny checkpoint uses these.
GUESSED_TOKEN_IDS = {
    "<|assistant|>": 200019,
    "<|user|>": 200021,
    "<|system|>": 200022,
    "<|tool|>": 200023,
    "<|/tool|>": 200024,
}
RELEASED_GENERATION_CONFIG = {"bos_token_id": 199999, "eos_token_id": [200020, 199999], "pad_token_id": 199999}

# LoRA sits on every decoder linear layer. The audio encoder also has `o_proj`/`down_proj`
# modules, so the pattern is anchored on the decoder's `model.layers.N`.
LORA_TARGET_MODULES = r"model\.layers\.\d+\.(self_attn\.(qkv_proj|o_proj)|mlp\.(gate_up_proj|down_proj))"


def decoder_lora_config(rank: int):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGET_MODULES,
        task_type="CAUSAL_LM",
    )


@lru_cache(maxsize=1)
def released_config() -> dict:
    return json.loads(RELEASED_CONFIG_FILE.read_text())


# What transformers' converter (convert_config in convert_phi4_multimodal_weights_to_hf.py, not in
# the wheel; described in ../shared/reference/README.md) does to the released config. Every key not
# named here passes to Phi4MultimodalConfig unchanged, sliding_window and the long-RoPE factors included.
CONVERTER_DROPS = (
    "_name_or_path",
    "architectures",
    "auto_map",
    "vision_lora",
    "speech_lora",
    "transformers_version",
    "_attn_implementation",
)
CONVERTER_AUDIO_DROPS = ("activation_checkpointing", "cnn_layer_norm", "input_layer", "encoder_embedding_config")
CONVERTER_AUDIO_RENAMES = {
    "attention_dim": "hidden_size",
    "attention_heads": "num_attention_heads",
    "linear_units": "intermediate_size",
}
CONVERTER_VISION_KEEPS = ("use_hd_transform", "crop_size", "hd_transform_order")


def converted_released_config() -> dict:
    """The released original-format config -> Phi4MultimodalConfig's keyword arguments, as the
    native-format weights (refs/pr/70) carry them."""
    original = copy.deepcopy(released_config())
    for key in CONVERTER_DROPS:
        original.pop(key, None)
    embedding = original.pop("embd_layer")
    audio = original.pop("audio_processor")["config"]
    for key in CONVERTER_AUDIO_DROPS:
        audio.pop(key, None)
    for old, new in CONVERTER_AUDIO_RENAMES.items():
        audio[new] = audio.pop(old)
    audio["nemo_conv_channels"] = audio.pop("nemo_conv_settings")["conv_channels"]
    audio["bias_max_distance"] = audio.pop("relative_attention_bias_args")["t5_bias_max_distance"]
    audio["downsample_rate"] = embedding["audio_embd_layer"]["downsample_rate"]
    image = embedding["image_embd_layer"]
    vision = {key: image[key] for key in CONVERTER_VISION_KEEPS if key in image}
    return {**original, "audio_config": audio, "vision_config": vision}


def released_native_config(text: dict | None = None, vision: dict | None = None, audio: dict | None = None):
    """The converted released config as a Phi4MultimodalConfig, with `text`/`vision`/`audio` sizes
    replacing released values; every other key keeps its released value. With fewer rotary dims
    per head (a smaller head), the long-RoPE factors are every k-th of the released 48, so the
    switch at 4,096 tokens still changes the rotary frequencies as released."""
    from transformers import Phi4MultimodalConfig

    kwargs = converted_released_config()
    kwargs.update(text or {})
    kwargs["vision_config"].update(vision or {})
    kwargs["audio_config"].update(audio or {})
    rope = kwargs["rope_scaling"]
    head_dim = kwargs["hidden_size"] // kwargs["num_attention_heads"]
    factors = int(head_dim * kwargs["partial_rotary_factor"]) // 2
    stride = len(rope["long_factor"]) // factors
    for key in ("long_factor", "short_factor"):
        rope[key] = rope[key][::stride][:factors]
    return Phi4MultimodalConfig(**kwargs)


def full_size_config():
    """The released model's configuration, converted as the native weights carry it, for
    meta-device checks and the random-weight benchmarks."""
    return released_native_config()
