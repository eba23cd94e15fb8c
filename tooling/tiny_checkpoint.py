"""Write a tiny, randomly initialised Phi-4-multimodal checkpoint in the real on-disk format.

Model weights can never be downloaded on our machines, so every test loads this checkpoint
through exactly the code path that loads `microsoft/Phi-4-multimodal-instruct`: a native
`Phi4MultimodalForCausalLM` config + safetensors, a byte-level BPE tokenizer with the real
special tokens, the native processor configs, and a PEFT folder per adapter of the table in
engine/model_family.py (`vision-lora/`, `speech-lora/`).
Output is deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
from pathlib import Path

import torch

from engine.model_config import (
    GUESSED_TOKEN_IDS,
    LORA_TARGET_MODULES,
    RELEASED_GENERATION_CONFIG,
    RELEASED_TOKEN_IDS,
    SPECIAL_TOKENS,
    decoder_lora_config,
    released_config,
    released_native_config,
)
from engine.model_family import PHI4, adapter_specs

# Enough everyday text that the BPE trainer learns real merges; the model is random anyway.
_TOKENIZER_CORPUS = """\
The quick brown fox jumps over the lazy dog. Describe the image in detail.
Transcribe the audio clip into text. Translate the audio to French.
Summarise the meeting in three bullet points. What is shown in this picture?
Hello, how are you today? I am fine, thank you. Please answer the question.
A photo of a cat sitting on a red chair next to a window with green plants.
Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation: commas, periods; colons! questions?
"""

# Decoder hidden 64, 2 layers, 4 heads / 2 KV heads; vision and audio encoders at width 32.
# image_size/patch_size stay at the real 448/14: the processor's token counts assume them.
_TINY_TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
_TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
_TINY_AUDIO = dict(
    hidden_size=32,
    intermediate_size=64,
    num_blocks=2,
    num_attention_heads=2,
    ext_pw_out_channel=32,
    depthwise_separable_out_channel=32,
    nemo_conv_channels=32,
)
TINY_LORA_RANK_STEP = 8  # the table's adapters get ranks 8, 16, ...: small, and each its own, as released


def _build_tokenizer():
    """A byte-level BPE trained on a few lines, laid out like the released vocabulary: 200,064
    entries, the control tokens at their released ids (RELEASED_TOKEN_IDS; GUESSED_TOKEN_IDS where
    the reference is silent), the ids between filled with word-like entries that decode to text
    (" qbaa") but that no text encodes to, like the released vocabulary's rare tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=480, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator(_TOKENIZER_CORPUS.splitlines() * 4, trainer)
    spec = json.loads(backend.to_str())
    vocab = spec["model"]["vocab"]
    controls = {**GUESSED_TOKEN_IDS, **RELEASED_TOKEN_IDS}
    first_control, size = min(controls.values()), released_config()["vocab_size"]
    letters = (_letters(i) for i in itertools.count())
    while len(vocab) < first_control:
        vocab.setdefault("\u0120" + next(letters), len(vocab))  # "Ġ": byte-level for a leading space
    names = {i: name for name, i in controls.items()}
    spec["added_tokens"] = [
        {
            "id": i,
            "content": names.get(i, f"<|reserved_{i}|>"),
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in range(first_control, size)
    ]
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image|>", "audio_token": "<|audio|>"},
        chat_template=PHI4.chat_template,
    )


def _letters(i: int) -> str:
    """0 -> "qaaaa", 1 -> "qbaaa", ...: distinct lowercase words (26**4 of them), none English."""
    return "q" + "".join(chr(ord("a") + i // 26**k % 26) for k in range(4))


# Only these keys of the tiny config differ from the converted released config (a test holds it to
# that): sizes.
TINY_SIZE_KEYS = {
    "text": tuple(_TINY_TEXT),
    "vision_config": tuple(_TINY_VISION),
    "audio_config": tuple(_TINY_AUDIO),
    "rope_parameters": ("long_factor", "short_factor"),
}


def _build_config(tokenizer):
    config = released_native_config(_TINY_TEXT, _TINY_VISION, _TINY_AUDIO)
    if len(tokenizer) != config.vocab_size:
        raise AssertionError(
            f"the tiny tokenizer has {len(tokenizer)} entries; the released vocabulary {config.vocab_size}"
        )
    return config


def _randomise_lora(model: torch.nn.Module, generator: torch.Generator, scale: float) -> None:
    """PEFT zero-initialises lora_B; give every LoRA matrix weights so each adapter changes output."""
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


def write_adapter(model, folder: str, rank: int, out_dir: Path, generator: torch.Generator, scale: float = 0.2):
    """Writes a random adapter of `rank` into `out_dir/folder` (the released layout) and returns
    `model` without it."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, decoder_lora_config(rank))
    _randomise_lora(peft_model, generator, scale)
    with tempfile.TemporaryDirectory() as tmp:
        peft_model.save_pretrained(tmp)
        target = out_dir / folder
        target.mkdir(parents=True, exist_ok=True)
        for f in Path(tmp).iterdir():
            shutil.copy(f, target / f.name)
    return peft_model.unload()


def write_tiny_checkpoint(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny checkpoint into `out_dir` and return its path."""
    from transformers import (
        GenerationConfig,
        Phi4MultimodalFeatureExtractor,
        Phi4MultimodalForCausalLM,
        Phi4MultimodalImageProcessor,
        Phi4MultimodalProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config = _build_config(tokenizer)

    torch.manual_seed(seed)
    model = Phi4MultimodalForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    # Random-init leaves some weights (norms, biases) at constants; perturb everything so
    # each modality path actually reaches the logits. With tied embeddings a random model's
    # strongest logit tends to be a control token it was just fed: a text answer echoed
    # `<|assistant|>` (which decodes to nothing) and photo answers hit `<|end|>` within 12 tokens.
    # Control tokens' rows are scaled down, so answers carry text and usually run to their token
    # budget, as the streaming, Stop and cancel tests need.
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
        model.model.embed_tokens.weight[[tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]] *= 0.1
    model.generation_config = GenerationConfig(**RELEASED_GENERATION_CONFIG)
    model.save_pretrained(out)

    processor = Phi4MultimodalProcessor(
        image_processor=Phi4MultimodalImageProcessor(),
        audio_processor=Phi4MultimodalFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=PHI4.chat_template,
    )
    processor.save_pretrained(out)

    for i, spec in enumerate(adapter_specs()):
        model = write_adapter(model, spec.folder, TINY_LORA_RANK_STEP * (i + 1), out, generator)
        tokenizer.save_pretrained(out / spec.folder)  # the real adapter folders carry one too

    (out / "tiny_checkpoint.json").write_text(
        json.dumps({"seed": seed, "lora_target_modules": LORA_TARGET_MODULES}, indent=2) + "\n"
    )
    return out
