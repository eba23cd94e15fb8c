"""The tiny checkpoint is in the real on-disk format, deterministic, and loads the way
transformers' documentation loads the released model."""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoProcessor

from engine.model_config import ADAPTER_FOLDERS
from engine.tiny_checkpoint import write_tiny_checkpoint
from tests.inputs import make_photo


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writes_the_real_file_layout(tiny_checkpoint):
    names = set(_digests(tiny_checkpoint))
    for required in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json", "processor_config.json", "chat_template.jinja"]:
        assert required in names
    for folder in ADAPTER_FOLDERS.values():
        assert {f"{folder}/adapter_config.json", f"{folder}/adapter_model.safetensors"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "phi4_multimodal"
    assert config["architectures"] == ["Phi4MultimodalForCausalLM"]
    tokenizer_config = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    assert tokenizer_config["image_token"] == "<|image|>" and tokenizer_config["audio_token"] == "<|audio|>"


def test_special_tokens_and_media_ids_agree(tiny_checkpoint):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    tok = processor.tokenizer
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["vision_config"]["image_token_id"] == tok.convert_tokens_to_ids("<|image|>")
    assert config["audio_config"]["audio_token_id"] == tok.convert_tokens_to_ids("<|audio|>")
    for special in ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"]:
        assert len(tok(special).input_ids) == 1, special
    gen = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert set(gen["eos_token_id"]) == {tok.convert_tokens_to_ids("<|end|>"), tok.convert_tokens_to_ids("<|endoftext|>")}


def test_lora_weights_are_nonzero(tiny_checkpoint):
    for folder in ADAPTER_FOLDERS.values():
        weights = load_file(tiny_checkpoint / folder / "adapter_model.safetensors")
        lora_b = [w for k, w in weights.items() if "lora_B" in k]
        assert lora_b and all(w.abs().sum() > 0 for w in lora_b)
        # only decoder layers are adapted, never the audio encoder's o_proj/down_proj
        assert all(".model.layers." in k and "embed_tokens_extend" not in k for k in weights)


def test_deterministic_for_a_seed(tiny_checkpoint, tmp_path):
    again = write_tiny_checkpoint(tmp_path / "again", seed=0)
    other = write_tiny_checkpoint(tmp_path / "other", seed=1)
    assert _digests(again) == _digests(tiny_checkpoint)
    assert _digests(other)["model.safetensors"] != _digests(tiny_checkpoint)["model.safetensors"]


def test_loads_like_the_transformers_docs(tiny_checkpoint):
    """from_pretrained, then load_adapter(path, adapter_name=..., adapter_kwargs={"subfolder": ...})."""
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    for name, folder in ADAPTER_FOLDERS.items():
        model.load_adapter(str(tiny_checkpoint), adapter_name=name, adapter_kwargs={"subfolder": folder})
    params = dict(model.named_parameters())
    for name, folder in ADAPTER_FOLDERS.items():
        for key, value in load_file(tiny_checkpoint / folder / "adapter_model.safetensors").items():
            loaded = key.removeprefix("base_model.model.").replace(".weight", f".{name}.weight")
            assert torch.equal(params[loaded], value), key

    prompt = "<|user|><|image|>Describe the image.<|end|><|assistant|>"
    inputs = processor(text=prompt, images=[make_photo()], return_tensors="pt")
    logits = {}
    with torch.no_grad():
        model.disable_adapters()
        logits["base"] = model(**inputs).logits[0, -1]
        for name in ADAPTER_FOLDERS:
            model.set_adapter(name)
            model.enable_adapters()
            logits[name] = model(**inputs).logits[0, -1]
    # each adapter changes the output
    assert not torch.allclose(logits["base"], logits["vision"])
    assert not torch.allclose(logits["base"], logits["speech"])
    assert not torch.allclose(logits["vision"], logits["speech"])
