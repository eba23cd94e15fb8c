"""`--quantize 4bit` on CPU (bitsandbytes' CPU backend): decoder weights in NF4, encoders and
LoRA layers in full precision, and every modality still generates through the router."""

from __future__ import annotations

import bitsandbytes as bnb
import pytest
import torch
from transformers import DynamicCache

from engine.engine import Engine
from engine.loading import LoadOptions
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message
from tooling.inputs import EXPECTED_ADAPTER, MODALITIES


@pytest.fixture(scope="module")
def engine_4bit(tiny_checkpoint):
    return Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu", quantize="4bit"))


def test_only_decoder_linears_are_quantized(engine_4bit):
    quantized = {n for n, m in engine_4bit.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert quantized and all(n.startswith("model.layers.") and n.endswith(".base_layer") for n in quantized)
    assert len(quantized) == 2 * 4  # tiny: 2 layers x (qkv, o, gate_up, down)
    for name, param in engine_4bit.model.named_parameters():
        if "lora_" in name or "embed_tokens_extend" in name:
            assert param.dtype == torch.float32, name


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_generates_every_modality(engine_4bit, modality):
    request = GenerationRequest([Message("user", MODALITIES[modality]())], SamplingParams(max_new_tokens=6))
    _, tokens, final = engine_4bit.generate(request)
    assert len(tokens) == final.metrics.completion_tokens >= 1
    assert final.metrics.adapter == EXPECTED_ADAPTER[modality]


def test_adapters_still_switch_when_quantized(engine_4bit):
    request = GenerationRequest([Message("user", MODALITIES["image"]())], SamplingParams(max_new_tokens=6))
    prepared = engine_4bit.prepare(request)
    logits = {}
    for adapter in ("base", "vision", "speech"):
        with engine_4bit.runner.turn([adapter]):
            cache = DynamicCache(config=engine_4bit.model.config)
            logits[adapter], _ = engine_4bit.runner.forward(prepared, prepared.inputs["input_ids"], cache)
    assert not torch.allclose(logits["base"], logits["vision"])
    assert not torch.allclose(logits["vision"], logits["speech"])
