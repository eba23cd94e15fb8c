"""Test inputs made here, never downloaded: synthetic photos and tones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from media.limits import SAMPLE_RATE
from media.parts import AudioPart, ImagePart, TextPart


def make_photo(width: int = 500, height: int = 300, seed: int = 0) -> Image.Image:
    """A synthetic photo: a gradient sky, a sun and some noise, so crops differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.int16)
    sun = (x - width * 0.7) ** 2 + (y - height * 0.3) ** 2 < (min(width, height) * 0.15) ** 2
    pixels[sun] = (255, 220, 0)
    pixels += rng.integers(-20, 20, pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_tone(seconds: float = 2.0, hz: float = 440.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


MODALITIES = {
    "text": lambda: [TextPart("Hello, how are you?")],
    "image": lambda: [ImagePart(make_photo()), TextPart("Describe the image.")],
    "audio": lambda: [AudioPart(make_tone()), TextPart("Transcribe the audio clip into text.")],
    "image+audio": lambda: [ImagePart(make_photo()), AudioPart(make_tone())],
}
EXPECTED_ADAPTER = {"text": "base", "image": "vision", "audio": "speech", "image+audio": "vision"}


# -- files in every format, made here ----------------------------------------------------------


def speak(text: str, path, rate: int = 22050) -> np.ndarray:
    """espeak-ng speech as float32 mono at espeak's 22,050 Hz; also written to `path` as WAV.

    With PHI4MM_SPOKEN set to a folder, each utterance is kept there as Ogg Vorbis (named by a hash of its
    text) and read back from there: the lent GPU machines have no espeak-ng, so bench/gpu_check.py's
    clips are spoken here and carried over."""
    import hashlib
    import os
    import subprocess

    import soundfile as sf

    kept = None
    if os.environ.get("PHI4MM_SPOKEN"):
        kept = Path(os.environ["PHI4MM_SPOKEN"]) / f"{hashlib.sha1(text.encode()).hexdigest()[:16]}.ogg"
    if kept is not None and kept.is_file():
        samples, _ = sf.read(str(kept), dtype="float32")
        sf.write(str(path), samples, rate)
        return samples
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True, timeout=60)
    samples, got_rate = sf.read(str(path), dtype="float32")
    if got_rate != rate:
        raise RuntimeError(f"espeak-ng wrote {got_rate} Hz, not {rate} Hz")
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(kept), samples, rate)
    return samples


def encode_audio(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """wav/flac/ogg/mp3 through soundfile; m4a/mp4/aac/webm through PyAV (AAC, or Opus in WebM)."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    if fmt in ("wav", "flac", "ogg", "mp3"):
        sf.write(buffer, samples, rate, format={"ogg": "OGG", "mp3": "MP3"}.get(fmt, fmt.upper()))
        return buffer.getvalue()
    import av

    container_format = {"m4a": "ipod", "mp4": "mp4", "aac": "adts", "webm": "webm"}[fmt]
    codec, out_rate = ("libopus", 48000) if fmt == "webm" else ("aac", rate)
    if out_rate != rate:  # Opus only takes 48 kHz
        samples = np.interp(np.arange(0, len(samples), rate / out_rate), np.arange(len(samples)), samples)
        samples = samples.astype(np.float32)
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=out_rate, layout="mono")
        frame_size = 960 if fmt == "webm" else 1024
        for start in range(0, len(samples), frame_size):
            chunk = samples[start : start + frame_size]
            if len(chunk) < frame_size:
                chunk = np.pad(chunk, (0, frame_size - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="fltp", layout="mono")
            frame.sample_rate = out_rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def write_video(path, seconds: float = 10.0, fps: float = 10.0, size=(320, 240), sound=None, rate: int = 22050):
    """An MP4 whose frame i is a flat grey of level (i * 2) % 256, drawn with OpenCV: the level
    tells the frame. With `sound` (float32, mono or frames x channels, at `rate`), PyAV writes
    H.264 video with an AAC soundtrack (OpenCV cannot write sound)."""
    import cv2

    def frame(i):
        return np.full((size[1], size[0], 3), (i * 2) % 256, np.uint8)

    if sound is None:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        for i in range(int(seconds * fps)):
            writer.write(frame(i))
        writer.release()
        return
    import av

    sound = sound.reshape(len(sound), -1).T.astype(np.float32)  # channels x frames, as "fltp" wants
    with av.open(str(path), mode="w", format="mp4") as container:
        # H.264, which browsers play; near-lossless, so the grey level survives the encoding
        video = container.add_stream("libx264", rate=int(fps), options={"crf": "1"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        layout = "mono" if len(sound) == 1 else "stereo"
        audio = container.add_stream("aac", rate=rate, layout=layout)
        for i in range(int(seconds * fps)):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame(i), format="bgr24")))
        for start in range(0, sound.shape[1], 1024):
            chunk = sound[:, start : start + 1024]
            chunk = np.pad(chunk, ((0, 0), (0, 1024 - chunk.shape[1])))
            piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            piece.sample_rate = rate
            container.mux(audio.encode(piece))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))


def write_video_with_speech(path, text: str, folder, fps: float = 10.0) -> np.ndarray:
    """`write_video` as long as `text` spoken by espeak-ng plus half a second, the speech its
    soundtrack. Returns the speech (22,050 Hz) as written."""
    rate = 22050
    speech = speak(text, Path(folder) / "soundtrack.wav", rate)
    sound = np.concatenate([speech, np.zeros(rate // 2, np.float32)])
    write_video(path, len(sound) / rate, fps, sound=sound, rate=rate)
    return speech


MEETING_SENTENCES = (
    "Good morning everyone, let's start with the budget.",
    "We agreed to move the launch to March.",
    "Maria will send the report by Friday.",
    "Are there any questions about the new office?",
    "The sales figures went up by ten percent.",
    "Let's take a short break and continue at eleven.",
)


def write_meeting(path, minutes: float, folder) -> float:
    """espeak-ng sentences with 0.5-2 s pauses, repeated to `minutes`, written in blocks as a
    22,050 Hz WAV (so the reader must resample). Returns the exact duration in seconds."""
    import soundfile as sf

    rate = 22050
    voices = [speak(s, folder / f"sentence{i}.wav", rate) for i, s in enumerate(MEETING_SENTENCES)]
    rng = np.random.default_rng(0)
    total, target = 0, int(minutes * 60 * rate)
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        while total < target:
            voice = voices[rng.integers(len(voices))]
            pause = np.zeros(int(rate * rng.uniform(0.5, 2.0)), np.float32)
            block = np.concatenate([voice, pause])[: target - total]
            out.write(block)
            total += len(block)
    return total / rate
