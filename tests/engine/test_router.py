"""The mixture of LoRAs: the adapter follows the media in the whole conversation, switching
never reloads weights, and switching back and forth leaves no trace."""

from __future__ import annotations

import itertools

import pytest

from engine.engine import Engine
from engine.loading import LoadOptions
from engine.request import GenerationRequest, SamplingParams
from engine.router import choose_adapter
from media.parts import AudioPart, ImagePart, Message, TextPart
from tooling.inputs import EXPECTED_ADAPTER, MODALITIES, make_photo, make_tone


def user(*parts):
    return Message("user", list(parts))


def assistant(text):
    return Message("assistant", [TextPart(text)])


@pytest.mark.parametrize(
    "messages, adapter",
    [
        ([user(TextPart("hi"))], "base"),
        ([user(AudioPart(make_tone()))], "speech"),
        ([user(ImagePart(make_photo()))], "vision"),
        ([user(ImagePart(make_photo()), ImagePart(make_photo(seed=1)))], "vision"),
        ([user(ImagePart(make_photo()), AudioPart(make_tone()))], "vision"),
        # an image in turn 1 and a voice note in turn 3 -> vision for the whole conversation
        (
            [
                user(ImagePart(make_photo()), TextPart("what is this?")),
                assistant("a sunset"),
                user(AudioPart(make_tone())),
            ],
            "vision",
        ),
        ([user(AudioPart(make_tone())), assistant("ok"), user(TextPart("and now?"))], "speech"),
    ],
)
def test_adapter_follows_the_whole_conversation(messages, adapter):
    assert choose_adapter(messages) == adapter


def test_the_router_reads_the_adapter_table(monkeypatch):
    """A row added to the table (engine/model_family.py) routes at once: audio to a new adapter
    that outranks speech, while an image still goes to vision, which outranks both."""
    from engine import model_family

    notes = model_family.AdapterSpec("notes", "notes-lora", frozenset({"audio"}), priority=15)
    monkeypatch.setattr(model_family, "ADAPTERS", (*model_family.ADAPTERS, notes))
    assert choose_adapter([user(AudioPart(make_tone()))]) == "notes"
    assert choose_adapter([user(ImagePart(make_photo()), AudioPart(make_tone()))]) == "vision"


def _answer(engine, modality):
    request = GenerationRequest([user(*MODALITIES[modality]())], SamplingParams(max_new_tokens=16))
    _, tokens, final = engine.generate(request)
    return tokens, final.metrics.adapter


def test_every_answer_reports_its_adapter(engine):
    for modality, adapter in EXPECTED_ADAPTER.items():
        chunks = list(
            engine.stream(GenerationRequest([user(*MODALITIES[modality]())], SamplingParams(max_new_tokens=4)))
        )
        assert {c.adapter for c in chunks} == {adapter}
        assert chunks[-1].metrics.adapter == adapter


def test_switching_back_and_forth_equals_a_fresh_engine(tiny_checkpoint, engine):
    weights_before = {name: p.data_ptr() for name, p in engine.model.named_parameters()}
    order = ["image", "audio", "text", "image+audio", "audio", "image", "text", "audio", "text", "image"]
    switched = {}
    for modality in order:
        switched.setdefault(modality, []).append(_answer(engine, modality))
    # no weight was reloaded or replaced by switching
    assert {name: p.data_ptr() for name, p in engine.model.named_parameters()} == weights_before

    for modality in EXPECTED_ADAPTER:
        fresh = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
        expected = _answer(fresh, modality)
        assert all(result == expected for result in switched[modality]), modality


def test_the_adapter_changes_the_answer(engine):
    """The same image prompt answered under each adapter differs: the LoRA is really applied."""
    request = GenerationRequest([user(*MODALITIES["image"]())], SamplingParams(max_new_tokens=12))
    prepared = engine.prepare(request)
    answers = {}
    for adapter in ("vision", "speech", "base"):
        prepared.adapter = adapter
        answers[adapter] = list(
            itertools.islice(engine.scheduler.submit(request, prepared, engine.sampler(request, prepared)), 12)
        )
    assert len({tuple(a) for a in answers.values()}) == 3


def test_a_missing_adapter_is_refused_not_bypassed(engine):
    engine.router.adapters, saved = ("vision",), engine.router.adapters
    engine.router.active = None
    try:
        with pytest.raises(RuntimeError, match="speech"):
            engine.generate(GenerationRequest([user(*MODALITIES["audio"]())], SamplingParams(max_new_tokens=2)))
    finally:
        engine.router.adapters = saved


def test_a_run_of_mixed_batch_steps_sets_the_adapter_state_once(engine):
    calls = []
    engine.model.disable_adapters = lambda: calls.append("off")
    engine.model.enable_adapters = lambda: calls.append("on")
    try:
        for _ in range(3):
            with engine.router.mixed(["vision", "speech", "base"]):
                pass
        assert calls == ["off"]  # PEFT's adapters off: the router's hook adds each row's update
        engine.router.activate("speech")  # a single request after the mixed run sets its own adapter
        assert calls == ["off", "on"] and engine.router.active == "speech"
    finally:
        del engine.model.enable_adapters, engine.model.disable_adapters
        engine.router.active = None  # PEFT's real state was not touched: make the next activate set it


def test_a_mixed_batch_gives_each_row_its_own_adapter(engine):
    """Rows under vision, speech and no adapter in one forward pass (the router's batched LoRA
    update) give the logits each row gives alone under PEFT's own single-adapter path (fp32)."""
    import torch

    ids = torch.randint(0, 1000, (3, 9), generator=torch.Generator().manual_seed(0))
    adapters = ["vision", "speech", "base"]
    with engine.runner.turn(adapters):
        batched = engine.model(input_ids=ids).logits[:, -1]
    alone = []
    for i, adapter in enumerate(adapters):
        with engine.runner.turn([adapter]):
            alone.append(engine.model(input_ids=ids[i : i + 1]).logits[:, -1])
        torch.testing.assert_close(batched[i : i + 1], alone[-1], rtol=1e-5, atol=1e-5)
    with engine.runner.turn(["base"]):
        plain = engine.model(input_ids=ids[:2]).logits[:, -1]
    assert not torch.allclose(plain, batched[:2], atol=1e-3)  # the adapters change the rows: the test can fail
