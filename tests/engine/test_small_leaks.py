"""Small leaks: another request's audio in a truncated file's tail, text lost at the end of an
answer, counters losing updates between threads, absurd token counts, media that multiplies
into more tokens than a GPU holds."""

from __future__ import annotations

import dataclasses
import io
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from core.errors import InvalidRequest, PromptTooLong
from engine.counters import EngineCounters, Tally
from engine.request import GenerationRequest, SamplingParams
from engine.text_stream import IncrementalDetokenizer
from media.audio_stream import decode_to_16k
from media.parts import ImagePart, Message, TextPart
from tooling.inputs import make_photo, make_tone


def test_a_truncated_mp3_holds_only_its_own_samples():
    """soundfile.blocks hands back its whole reused buffer for a short last block: the tail of a
    truncated file then held the tone decoded just before it."""
    rate = 16000
    mp3 = io.BytesIO()
    sf.write(mp3, 0.5 * make_tone(12.0, 440.0, rate), rate, format="MP3")
    truncated = mp3.getvalue()[: len(mp3.getvalue()) // 3]
    loud = io.BytesIO()
    sf.write(loud, 0.99 * make_tone(12.0, 1000.0, rate), rate, format="WAV")

    fresh = decode_to_16k(io.BytesIO(truncated), 60)
    decode_to_16k(io.BytesIO(loud.getvalue()), 60)  # another user's loud tone, decoded just before
    after_tone = decode_to_16k(io.BytesIO(truncated), 60)
    assert np.array_equal(fresh, after_tone)  # deterministic: nothing of the earlier decode
    assert np.isfinite(after_tone).all() and np.abs(after_tone).max() < 0.7  # the file's own 0.5 tone
    assert len(after_tone) < 6 * rate  # about the third of 12 s that is there, not the header's 12 s
    spectrum = np.abs(np.fft.rfft(after_tone))
    freqs = np.fft.rfftfreq(len(after_tone), 1 / rate)
    assert spectrum[np.abs(freqs - 1000) < 20].max() < 0.01 * spectrum.max()  # no 1 kHz from the other decode


def test_an_answer_ending_inside_a_character_loses_no_text(engine):
    tokenizer = engine.tokenizer
    for text in ("héllo 日本", "ok 🙂"):
        ids = tokenizer(text, add_special_tokens=False).input_ids[:-1]  # the last character cut short
        detokenizer = IncrementalDetokenizer(tokenizer)
        streamed = "".join(detokenizer.push(i) for i in ids) + detokenizer.flush()
        assert streamed == tokenizer.decode(ids, skip_special_tokens=True)


def test_counters_lose_no_update_between_threads():
    counters, tally, interval = EngineCounters(), Tally(), sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a racy += loses updates
    try:

        def work():
            for _ in range(20_000):
                counters.add_tokens(1)
                counters.finish("stop")
                tally.add("blocked")

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert counters.tokens_generated == 160_000 and counters.finished["stop"] == 160_000
    assert tally.snapshot() == {"blocked": 160_000} and tally.total() == 160_000


def test_max_tokens_beyond_the_context_window_is_refused(engine):
    request = GenerationRequest([Message("user", [TextPart("hi")])], SamplingParams(max_new_tokens=10**12))
    with pytest.raises(InvalidRequest, match="context window"):
        engine.prepare(request)


def test_media_over_the_token_budget_is_refused_naming_it(engine):
    limits = engine.limits
    engine.limits = dataclasses.replace(limits, max_media_tokens=300)
    try:
        request = GenerationRequest(
            [Message("user", [ImagePart(make_photo(900, 900)), TextPart("What is it?")])],
            SamplingParams(max_new_tokens=4),
        )
        with pytest.raises(PromptTooLong, match="up to 300 per request"):
            engine.prepare(request)
    finally:
        engine.limits = limits
    assert engine.limits.max_media_tokens >= 22_500  # the default still takes 30 min of speech in one prompt
