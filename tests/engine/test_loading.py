"""Loading choices: device, dtype and attention resolution, and overriding them."""

from __future__ import annotations

import pytest
import torch

from core.errors import ModelUnavailable
from core.settings import DEFAULT_MODEL
from engine.engine import Engine
from engine.loading import LoadOptions, resolve_attention, resolve_device, resolve_dtype, resolve_revision
from engine.model_config import DEFAULT_REVISION
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message
from tooling.inputs import MODALITIES


def test_defaults():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", cuda) == torch.bfloat16
    assert resolve_dtype("float16", cpu) == torch.float16
    assert resolve_attention("auto") == "sdpa"
    assert resolve_attention("eager") == "eager"
    assert resolve_revision(LoadOptions()) == DEFAULT_REVISION == "refs/pr/70"
    assert resolve_revision(LoadOptions(model="someone/fine-tune")) is None
    assert resolve_revision(LoadOptions(model=DEFAULT_MODEL, revision="main")) == "main"
    assert resolve_device("cpu") == cpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ModelUnavailable, match="sees no CUDA GPU"):
        resolve_device("cuda")


def _tokens(engine, modality):
    request = GenerationRequest([Message("user", MODALITIES[modality]())], SamplingParams(max_new_tokens=12))
    return engine.generate(request)[1]


def test_eager_attention_gives_the_same_tokens(tiny_checkpoint, engine):
    eager = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu", attention="eager"))
    assert eager.model.config._attn_implementation == "eager"
    assert engine.model.config._attn_implementation == "sdpa"
    for modality in ("text", "image+audio"):
        assert _tokens(eager, modality) == _tokens(engine, modality)


def test_dtype_can_be_overridden(tiny_checkpoint):
    bf16 = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu", dtype="bfloat16"))
    assert bf16.dtype == torch.bfloat16
    assert (
        bf16.prepare(GenerationRequest([Message("user", MODALITIES["image"]())])).inputs["image_pixel_values"].dtype
        == torch.bfloat16
    )
    assert len(_tokens(bf16, "image+audio")) == 12
