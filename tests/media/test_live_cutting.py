"""Live captions' cutting: audio arriving a second at a time (as a microphone sends it) closes
into 10-30 s segments at the pauses between sentences, covers every sample once, and holds only
the open segment however long the meeting runs."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from media.segmentation import LiveCutter
from tooling.inputs import make_tone, write_meeting


@pytest.fixture(scope="module")
def meeting(tmp_path_factory):
    """About two minutes of espeak-ng sentences with 0.5-2 s pauses, at 22,050 Hz."""
    folder = tmp_path_factory.mktemp("live")
    write_meeting(folder / "meeting.wav", 2.0, folder)
    samples, rate = sf.read(str(folder / "meeting.wav"), dtype="float32")
    return samples, rate


def chunks(samples, size):
    return (samples[i : i + size] for i in range(0, len(samples), size))


def test_segments_close_at_pauses_between_10_and_30_seconds(meeting):
    samples, rate = meeting
    cutter, segments = LiveCutter(rate), []
    for chunk in chunks(samples, rate):
        segments += cutter.feed(chunk)
        assert len(cutter.pending) <= 31 * rate  # only the open segment is held
    segments += cutter.finish()
    assert len(segments) >= 4
    assert np.array_equal(np.concatenate([s for _, _, s in segments]), samples)  # every sample, once, in order
    assert [start for start, _, _ in segments[1:]] == [end for _, end, _ in segments[:-1]]
    for start, end, _ in segments[:-1]:
        assert 10 <= end - start <= 30
        # each cut falls in a pause: the 100 ms on either side are quiet
        around = samples[int(end * rate) - rate // 10 : int(end * rate) + rate // 10]
        assert np.abs(around).max() < 0.05 * np.abs(samples).max()


def test_without_pauses_a_segment_closes_at_30_seconds():
    tone = make_tone(75.0, 300.0) * 0.5
    cutter = LiveCutter(16000)
    segments = [s for chunk in chunks(tone, 16000) for s in cutter.feed(chunk)] + cutter.finish()
    lengths = [end - start for start, end, _ in segments]
    assert all(25 <= n <= 30 for n in lengths[:-1]) and sum(lengths) == pytest.approx(75.0)


def test_a_segment_closes_in_the_middle_of_the_first_pause_after_10_seconds():
    rate = 16000
    audio = np.concatenate([make_tone(11.0, 300.0) * 0.5, np.zeros(rate), make_tone(5.0, 300.0) * 0.5])
    cutter = LiveCutter(rate)
    (start, end, _), *_ = [s for chunk in chunks(audio, 4000) for s in cutter.feed(chunk)] + cutter.finish()
    assert start == 0 and 11.4 <= end <= 11.6  # the middle of the pause


def test_an_hour_of_chunks_holds_only_the_open_segment():
    rate, cutter, held = 16000, LiveCutter(16000), 0
    rng = np.random.default_rng(0)
    for second in range(3600):
        # speech-like bursts with a pause every 7 seconds
        chunk = rng.standard_normal(rate).astype(np.float32) * (0.0 if second % 7 == 6 else 0.2)
        for _ in cutter.feed(chunk):
            pass
        held = max(held, len(cutter.pending))
    assert held <= 31 * rate and cutter.seconds == 3600
