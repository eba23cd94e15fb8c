"""Preprocessing benchmark on this machine, against the issue's goals:

    30-minute audio file -> model features (decode + resample + log-mel)   goal <= 2 s
    16 frames from a 10-minute 720p video                                 goal <= 1.5 s
    4000x3000 JPEG -> model tensors                                        goal <= 0.3 s

Each line also times a baseline in the same run: transformers' own feature extractor for
audio, decoding every frame for video. Inputs are generated first (not timed).

    python bench/preprocess.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalImageProcessor  # noqa: E402

from media.audio import load_audio  # noqa: E402
from media.audio_features import FastLogMelExtractor  # noqa: E402
from media.images import load_image  # noqa: E402
from media.limits import SAMPLE_RATE  # noqa: E402
from media.video import load_video  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_recording(path: Path, minutes: float, rate: int) -> None:
    """Speech-like noise bursts with pauses, written in blocks (never the whole array at once)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, format=path.suffix[1:].upper()) as out:
        for _ in range(int(minutes * 60)):
            second = rng.standard_normal(rate).astype(np.float32) * 0.1
            second[int(rate * 0.7) :] *= 0.01  # a pause each second
            out.write(second)


def make_video(path: Path, minutes: float, fps: float = 5.0, size=(1280, 720)) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    base = np.zeros((size[1], size[0], 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)
    for i in range(int(minutes * 60 * fps)):
        frame = base.copy()
        x = (i * 7) % (size[0] - 100)
        frame[300:400, x : x + 100] = (0, 200, 255)
        writer.write(frame)
    writer.release()


def decode_every_frame(path: Path) -> int:
    import cv2

    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def make_photo_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([x * 255 // 4000, y * 255 // 3000, (x + y) % 256], axis=-1).astype(np.uint8)
    pixels += rng.integers(0, 30, pixels.shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def report(name: str, seconds: float, goal: float, baseline: float | None = None, baseline_name: str = "") -> None:
    verdict = "meets" if seconds <= goal else "MISSES"
    extra = f"   baseline ({baseline_name}) {baseline:.3f} s, {baseline / seconds:.1f}x" if baseline else ""
    print(f"{name:<44} {seconds:7.3f} s   goal <= {goal} s ({verdict}){extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(
        f"# bench/preprocess.py  {time.strftime('%Y-%m-%d')}  CPU threads: {torch.get_num_threads()}  "
        f"median of {args.repeats}"
    )
    fast, reference = FastLogMelExtractor(), Phi4MultimodalFeatureExtractor()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for rate, suffix in ((44100, ".wav"), (16000, ".wav"), (44100, ".flac")):
            path = tmp / f"meeting_{rate}{suffix}"
            make_recording(path, 30, rate)

            def audio_to_features(extractor=fast, path=path):
                samples = load_audio(path, max_seconds=1900).samples
                return extractor([samples], sampling_rate=SAMPLE_RATE, return_tensors="pt")

            ours = timed(audio_to_features, args.repeats)
            base = timed(lambda: audio_to_features(reference), 1)
            report(f"30-min {rate} Hz {suffix[1:].upper()} -> features", ours, 2.0, base, "transformers extractor")

        video = tmp / "talk_720p.mp4"
        make_video(video, 10)
        ours = timed(lambda: load_video(video, frames=16), args.repeats)
        base = timed(lambda: decode_every_frame(video), 1)
        report("16 frames from a 10-min 720p video", ours, 1.5, base, "decode every frame")

        jpeg = make_photo_jpeg()
        processor = Phi4MultimodalImageProcessor()
        ours = timed(lambda: processor([load_image(jpeg)], return_tensors="pt"), args.repeats)
        report("4000x3000 JPEG -> model tensors (36-crop budget)", ours, 0.3)


if __name__ == "__main__":
    main()
