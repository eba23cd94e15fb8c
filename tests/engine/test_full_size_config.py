"""The project's full-size configuration matches the released model and the report (section 2.1).
Built on the meta device: no memory, exact parameter counts."""

from __future__ import annotations

import pytest
import torch
from peft import get_peft_model
from transformers import Phi4MultimodalConfig, Phi4MultimodalForCausalLM

from engine.model_config import decoder_lora_config, full_size_config
from engine.model_family import adapter_specs


@pytest.fixture(scope="module")
def meta_model():
    with torch.device("meta"):
        return Phi4MultimodalForCausalLM(full_size_config())


def _count(model, predicate):
    return sum(p.numel() for n, p in model.named_parameters() if predicate(n))


def test_decoder_shape_matches_the_report():
    c = full_size_config()
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size) == (32, 3072, 8192)
    assert (c.num_attention_heads, c.num_key_value_heads, c.hidden_size // c.num_attention_heads) == (24, 8, 128)
    assert c.tie_word_embeddings and c.vocab_size == 200064
    assert c.rope_parameters["partial_rotary_factor"] == 0.75  # 25 % of each head without rotary
    bare = Phi4MultimodalConfig()
    assert bare.num_attention_heads == 32 and not bare.tie_word_embeddings  # why we keep our own


@pytest.mark.slow  # builds the full-size model
def test_parameter_counts_within_five_percent(meta_model):
    decoder = _count(meta_model, lambda n: "embed_tokens_extend" not in n)
    vision = _count(meta_model, lambda n: "image_embed" in n)
    audio = _count(meta_model, lambda n: "audio_embed" in n)
    assert meta_model.lm_head.weight is meta_model.model.embed_tokens.weight
    assert decoder == pytest.approx(3.8e9, rel=0.05)
    assert vision == pytest.approx(440e6, rel=0.05)
    assert audio == pytest.approx(460e6, rel=0.05)

    lora = {}
    model = meta_model
    for spec in adapter_specs():
        peft_model = get_peft_model(model, decoder_lora_config(spec.released_rank))
        lora[spec.name] = _count(peft_model, lambda n: "lora_" in n)
        assert _count(peft_model, lambda n: "lora_" in n and "embed_tokens_extend" in n) == 0
        model = peft_model.unload()
    assert lora["vision"] == pytest.approx(370e6, rel=0.05)  # r=256
    assert lora["speech"] == pytest.approx(460e6, rel=0.05)  # r=320
    assert decoder + vision + audio + sum(lora.values()) == pytest.approx(5.6e9, rel=0.05)
