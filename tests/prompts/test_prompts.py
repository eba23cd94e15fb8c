"""The task prompts are the exact strings the model was trained with; the chat template (the one
renderer) writes Phi-4's chat format, with or without a template in the checkpoint; the <sep>
parser copes with what the model really writes."""

from __future__ import annotations

import copy

import pytest

from prompts import tasks
from prompts.languages import SPEECH_LANGUAGES, resolve_language


def test_official_task_prompts_exactly():
    assert tasks.ASR == "Transcribe the audio clip into text."
    assert tasks.translate("fr") == "Translate the audio to French."
    assert tasks.transcribe_and_translate("German") == (
        "Transcribe the audio to text, and then translate the audio to German. "
        "Use <sep> as a separator between the original transcript and the translation."
    )
    assert tasks.SPOKEN_QUERY == ""


def test_eight_languages_defined_once():
    assert sorted(SPEECH_LANGUAGES.values()) == sorted(
        ["English", "Chinese", "German", "French", "Italian", "Japanese", "Spanish", "Portuguese"]
    )
    for code, name in SPEECH_LANGUAGES.items():
        assert resolve_language(code.upper()) == resolve_language(name.lower()) == name
    with pytest.raises(ValueError, match="choose one of: English \\(en\\)"):
        resolve_language("Klingon")


@pytest.mark.parametrize(
    "answer, transcript, translation",
    [
        ("Hello world <sep> Bonjour le monde", "Hello world", "Bonjour le monde"),
        ("Hello world<sep>Bonjour le monde\n", "Hello world", "Bonjour le monde"),
        ("Hello world", "Hello world", None),  # missing separator
        ("Hello world <sep> ", "Hello world", None),  # separator but no translation
        ("Hello <sep> Bonjour <sep> Salut", "Hello", "Bonjour\nSalut"),  # repeated: nothing dropped
        ("<sep> Hello <sep> Bonjour", "Hello", "Bonjour"),  # leading separator
        ("", "", None),
    ],
)
def test_sep_parser(answer, transcript, translation):
    result = tasks.split_transcript_translation(answer)
    assert (result.transcript, result.translation) == (transcript, translation)


@pytest.mark.parametrize(
    "fmt, length, unit, expected",
    [
        (
            "bullets",
            None,
            "words",
            "Summarize the audio. Write the summary as bullet points, one per line, each starting with '- '.",
        ),
        ("paragraph", 100, "words", "Summarize the audio. Write the summary as one paragraph. Use at most 100 words."),
        (
            "email",
            3,
            "sentences",
            "Summarize the audio. Write the summary as a short email to the participants, "
            "starting with a 'Subject:' line. Use at most 3 sentences.",
        ),
        (
            "paragraph",
            1,
            "sentences",
            "Summarize the audio. Write the summary as one paragraph. Use at most 1 sentence.",
        ),
    ],
)
def test_summary_prompts(fmt, length, unit, expected):
    assert tasks.summary(fmt=fmt, length=length, unit=unit) == expected


def test_summary_keeps_the_users_instruction_and_json_format():
    prompt = tasks.summary("List the decisions made about the budget.", fmt="json")
    assert prompt.startswith("List the decisions made about the budget. Answer with JSON only")
    assert '"action_items"' in prompt
    for bad in (dict(fmt="haiku"), dict(unit="pages"), dict(length=0)):
        with pytest.raises(ValueError):
            tasks.summary(**bad)


def test_other_task_prompts():
    assert tasks.AUDIO_SOUNDS.startswith("Describe the sounds")
    assert "music" in tasks.AUDIO_MUSIC and tasks.VIDEO_DESCRIPTION == "Describe what happens in this video."
    assert (
        tasks.video_frames_note([0.5, 1.5], 2.0)
        == "These 2 frames are from a 2.0-second video, taken at 0.5, 1.5 seconds."
    )
    assert tasks.video_frames_note([0.5], 2.0, "heard").endswith("seconds. The audio is the video's soundtrack.")
    assert tasks.video_frames_note([0.5], 2.0, "left out").endswith(" The video's sound is not included.")
    assert tasks.transcript_token_budget(60) == 392 and tasks.transcript_token_budget(0) == 64


CONVERSATIONS = [
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "What?"}]},
    ],
    [
        {"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": tasks.ASR}]},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "and these?"}]},
    ],
]


RENDERED = [
    "<|user|>Hi<|end|><|assistant|>",
    "<|system|>Be brief.<|end|><|user|><|image|><|audio|>What?<|end|><|assistant|>",
    f"<|user|><|audio|>{tasks.ASR}<|end|><|assistant|>hello there<|end|><|user|><|image|><|image|>and these?<|end|>"
    "<|assistant|>",
]


@pytest.mark.parametrize("conversation, rendered", zip(CONVERSATIONS, RENDERED))
def test_the_template_writes_the_chat_format_with_media_in_order(engine, conversation, rendered):
    assert engine.render(conversation) == rendered


def test_a_checkpoint_without_a_template_gets_the_same_prompt(engine):
    from engine.engine import Engine
    from engine.model_family import PHI4
    from engine.request import GenerationRequest
    from media.parts import Message, TextPart

    processor = copy.copy(engine.processor)
    processor.tokenizer = copy.copy(engine.tokenizer)
    processor.chat_template = processor.tokenizer.chat_template = None
    bare = Engine(engine.model, processor, engine.device)
    request = GenerationRequest([Message("system", [TextPart("Be brief.")]), Message("user", [TextPart("Hi")])])
    assert bare.processor.chat_template is None and bare.chat_template == PHI4.chat_template
    assert bare.prepare(request).input_ids.tolist() == engine.prepare(request).input_ids.tolist()
