"""The reference path: transformers' own `generate` on a model loaded independently of the engine."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.engine import Engine
from engine.loading import LoadOptions
from engine.model_family import adapter_specs
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message
from tooling.inputs import MODALITIES

TOKENS = 16


def request(modality: str, tokens: int = TOKENS) -> GenerationRequest:
    """One modality's request (tooling.inputs.MODALITIES), greedy, `tokens` long."""
    return GenerationRequest([Message("user", MODALITIES[modality]())], SamplingParams(max_new_tokens=tokens))


@pytest.fixture(scope="module")
def solo(engine):
    """Each modality's greedy tokens from the one-at-a-time path."""
    assert not engine.scheduler.threaded  # one at a time: the reader runs the loop
    return {modality: engine.generate(request(modality))[1] for modality in MODALITIES}


@pytest.fixture(scope="session")
def reference_model(tiny_checkpoint):
    """Loaded with plain transformers + peft, not through engine/loading.py."""
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    for spec in adapter_specs():
        model.load_adapter(str(tiny_checkpoint), adapter_name=spec.name, adapter_kwargs={"subfolder": spec.folder})
    return model


@pytest.fixture(scope="session")
def slot_engines(tiny_checkpoint, compile_folder):
    """mode -> one engine per session on that fast path (static or compiled), its slot cache 16
    rows, so every batch bucket (1-16) is built: shared by test_fast_decode.py (a request alone
    takes bucket 1), test_slot_decoder.py (every bucket) and the self-check test."""
    engines = {}

    def get(mode: str) -> Engine:
        if mode not in engines:
            engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
            assert engine.set_decode(mode, static_rows=16, compile_cache=str(compile_folder)) == mode
            engines[mode] = engine
        return engines[mode]

    return get


# the compiled path's one cold compile takes ~25 s on 2 cores: the whole suite runs it, the
# everyday tier the same tests on the static path (the same slot cache and step, uncompiled)
@pytest.fixture(scope="session", params=["static", pytest.param("compiled", marks=pytest.mark.slow)])
def fast_engine(request, slot_engines):
    return slot_engines(request.param)


def reference_tokens(model, engine, request, adapter) -> list[int]:
    """Greedy `generate` on the engine's own processor inputs, under `adapter`."""
    prepared = engine.prepare(request)
    if adapter == "base":
        model.disable_adapters()
    else:
        model.set_adapter(adapter)
        model.enable_adapters()
    with torch.no_grad():
        out = model.generate(
            **prepared.inputs,
            max_new_tokens=request.params.max_new_tokens,
            do_sample=False,
            suppress_tokens=engine.media_token_ids,
        )
    return out[0, prepared.prompt_tokens :].tolist()
