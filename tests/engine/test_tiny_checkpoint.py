"""The tiny checkpoint is in the real on-disk format, deterministic, and loads the way
transformers' documentation loads the released model."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoProcessor

from engine.model_family import adapter_specs
from tooling.inputs import make_photo
from tooling.tiny_checkpoint import write_tiny_checkpoint

ADAPTER_FOLDERS = {spec.name: spec.folder for spec in adapter_specs()}


def _digests(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_writes_the_real_file_layout(tiny_checkpoint):
    names = set(_digests(tiny_checkpoint))
    for required in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "chat_template.jinja",
    ]:
        assert required in names
    for folder in ADAPTER_FOLDERS.values():
        assert {f"{folder}/adapter_config.json", f"{folder}/adapter_model.safetensors"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "phi4_multimodal"
    assert config["architectures"] == ["Phi4MultimodalForCausalLM"]
    tokenizer_config = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    assert tokenizer_config["image_token"] == "<|image|>" and tokenizer_config["audio_token"] == "<|audio|>"


def test_token_ids_and_generation_config_are_the_released_ones(tiny_checkpoint):
    from engine.model_config import GUESSED_TOKEN_IDS, RELEASED_GENERATION_CONFIG, RELEASED_TOKEN_IDS

    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    tok = processor.tokenizer
    assert len(tok) == 200064
    assert {t: tok.convert_tokens_to_ids(t) for t in RELEASED_TOKEN_IDS} == RELEASED_TOKEN_IDS
    assert {t: tok.convert_tokens_to_ids(t) for t in GUESSED_TOKEN_IDS} == GUESSED_TOKEN_IDS
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (199999, 199999, 199999)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["vision_config"]["image_token_id"] == tok.convert_tokens_to_ids(processor.image_token) == 200010
    assert config["audio_config"]["audio_token_id"] == tok.convert_tokens_to_ids(processor.audio_token) == 200011
    for special in ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"]:
        assert len(tok(special).input_ids) == 1, special
    gen = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert {k: gen[k] for k in RELEASED_GENERATION_CONFIG} == RELEASED_GENERATION_CONFIG


def test_filler_ids_decode_to_text_but_no_text_encodes_to_them(tiny_checkpoint):
    """The ids between the trained tokens and the control tokens stand in for the released
    vocabulary's rare tokens: a random model mostly samples them, so they must read as text."""
    tok = AutoProcessor.from_pretrained(tiny_checkpoint).tokenizer
    assert tok.decode([150000, 150001]).strip() and "<|" not in tok.decode([150000, 150001])
    assert max(tok("The quick brown fox, qbaaa and qzzzz.").input_ids) < 1000


def test_lora_weights_are_nonzero(tiny_checkpoint):
    for folder in ADAPTER_FOLDERS.values():
        weights = load_file(tiny_checkpoint / folder / "adapter_model.safetensors")
        lora_b = [w for k, w in weights.items() if "lora_B" in k]
        assert lora_b and all(w.abs().sum() > 0 for w in lora_b)
        # only decoder layers are adapted, never the audio encoder's o_proj/down_proj
        assert all(".model.layers." in k and "embed_tokens_extend" not in k for k in weights)


@pytest.mark.slow  # writes two more checkpoints
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


def test_the_shipped_released_config_is_the_reference_copy():
    from pathlib import Path

    from engine.model_config import RELEASED_CONFIG_FILE

    reference = Path(__file__).resolve().parents[3] / "shared" / "reference" / RELEASED_CONFIG_FILE.name
    if not reference.exists():
        pytest.skip("no ../shared/reference beside this checkout")
    assert RELEASED_CONFIG_FILE.read_bytes() == reference.read_bytes()


def test_tiny_config_keeps_the_released_sliding_window(tiny_checkpoint):
    """It makes transformers build sliding-window cache layers, which broke the static and
    compiled paths (decoding restarted at position 0); every fidelity test now runs with it."""
    from engine.model_config import released_config

    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["sliding_window"] == released_config()["sliding_window"] == 262144


def test_tiny_config_differs_from_the_released_one_only_in_sizes(tiny_checkpoint):
    """The released config (converted as transformers' converter does) is the ground truth: the
    tiny one shrinks sizes; nothing else differs, token ids and vocabulary size included."""
    from transformers import Phi4MultimodalConfig

    from engine.model_config import converted_released_config
    from tooling.tiny_checkpoint import TINY_SIZE_KEYS

    released = Phi4MultimodalConfig(**converted_released_config()).to_dict()
    tiny = Phi4MultimodalConfig.from_pretrained(tiny_checkpoint).to_dict()
    # not model facts: where and how it was saved (the tiny weights are stored in fp32)
    metadata = {"transformers_version", "architectures", "dtype", "_name_or_path"}
    differing = set()
    for key in (set(released) | set(tiny)) - metadata:
        if isinstance(released.get(key), dict) and isinstance(tiny.get(key), dict):
            differing |= {
                (key, k)
                for k in (set(released[key]) | set(tiny[key])) - metadata
                if released[key].get(k) != tiny[key].get(k)
            }
        elif released.get(key) != tiny.get(key):
            differing.add(("text", key))
    allowed = {(section, key) for section, names in TINY_SIZE_KEYS.items() for key in names}
    assert differing <= allowed, sorted(differing - allowed)
    assert ("audio_config", "bias_max_distance") not in differing  # released 500; the old tiny had 1000
    rope = tiny["rope_parameters"]
    assert rope["long_factor"] == released["rope_parameters"]["long_factor"][::8][:6] != rope["short_factor"]
