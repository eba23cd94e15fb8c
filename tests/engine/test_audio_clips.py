"""Any number of audio clips of any length in one prompt (engine/audio_clips.py): each clip's
embedding is the one it has alone; transformers' own encoder fails once a clip passes 40 s."""

from __future__ import annotations

import pytest
import torch

from engine.request import GenerationRequest, SamplingParams
from media.parts import AudioPart, Message, TextPart
from tests.engine.conftest import reference_tokens
from tooling.inputs import make_tone


def voice_notes(*seconds: float) -> GenerationRequest:
    clips = [AudioPart(make_tone(s, hz=100.0 + 5 * s)) for s in seconds]  # each length its own pitch
    return GenerationRequest([Message("user", [*clips, TextPart("What is said?")])], SamplingParams(max_new_tokens=4))


def clip_embeddings(model, engine, request) -> list[torch.Tensor]:
    """The audio embedding module's rows at each clip's placeholders, clip by clip."""
    inputs = engine.prepare(request).inputs
    ids = inputs["input_ids"]
    blank = torch.zeros(*ids.shape, model.config.hidden_size)
    with torch.no_grad():
        placed = model.model.embed_tokens_extend.audio_embed(
            ids,
            blank,
            audio_input_features=inputs["audio_input_features"],
            audio_embed_sizes=inputs["audio_embed_sizes"],
            audio_attention_mask=inputs.get("audio_attention_mask"),
        )
    rows = placed[ids == model.config.audio_config.audio_token_id]
    return list(rows.split(inputs["audio_embed_sizes"].tolist()))


@pytest.mark.parametrize("seconds", [(2.0, 60.0), (35.0, 45.0), (2.0, 35.0, 41.0)])
def test_each_clip_embeds_as_it_does_alone(engine, seconds):
    together = clip_embeddings(engine.model, engine, voice_notes(*seconds))
    for clip, embedded in zip(seconds, together):
        (alone,) = clip_embeddings(engine.model, engine, voice_notes(clip))
        assert torch.equal(embedded, alone), f"the {clip} s clip changed beside the others"


def test_where_transformers_works_it_agrees(engine, reference_model):
    """2 s + 35 s stays under transformers' 40 s window. Its batched encoder gives the longest clip
    (no padding) what ours gives, and a clip alone what ours gives alone. The short clip differs in
    its batch: the conformer's 'mask' is a bool added to the attention bias (+1, never -inf, as in
    the released remote code), so a short clip attends to its padding there; alone it cannot."""
    request = voice_notes(2.0, 35.0)
    short, long = clip_embeddings(engine.model, engine, request)
    native_short, native_long = clip_embeddings(reference_model, engine, request)
    torch.testing.assert_close(long, native_long, rtol=1e-5, atol=1e-5)
    (native_alone,) = clip_embeddings(reference_model, engine, voice_notes(2.0))
    torch.testing.assert_close(short, native_alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(native_short, native_alone, atol=1e-3)  # why alone is the one to keep


@pytest.mark.parametrize("seconds", [(2.0, 60.0), (35.0, 45.0)])
def test_where_transformers_fails_the_engine_answers(engine, reference_model, seconds):
    request = voice_notes(*seconds)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        reference_tokens(reference_model, engine, request, "speech")
    text, tokens, final = engine.generate(request)
    assert len(tokens) == 4 and final.metrics.adapter == "speech"


def test_a_video_with_a_long_soundtrack_beside_a_voice_note(engine):
    """A video's soundtrack is one more clip: 2 s of voice beside 60 s of sound."""
    from media.parts import VideoPart
    from tooling.inputs import make_photo

    video = VideoPart(frames=[make_photo(64, 64)], timestamps=[0.0], duration=60.0, soundtrack=make_tone(60.0))
    request = GenerationRequest(
        [Message("user", [AudioPart(make_tone(2.0)), video, TextPart("What happens?")])],
        SamplingParams(max_new_tokens=4),
    )
    _, tokens, final = engine.generate(request)
    assert len(tokens) == 4 and final.metrics.adapter == "vision"
