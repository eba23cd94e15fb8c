"""Regenerates the example inputs committed beside this file: a synthetic sunset photo and a
spoken question (espeak-ng). Run: python ui/examples/make_examples.py"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent


def sunset(path: Path, width: int = 640, height: int = 420) -> None:
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (np.array([255, 140, 60]) * (1 - y) + np.array([60, 40, 120]) * y).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).copy())
    draw = ImageDraw.Draw(image)
    draw.ellipse([width * 0.4, height * 0.45, width * 0.6, height * 0.75], fill=(255, 220, 90))
    draw.rectangle([0, height * 0.62, width, height], fill=(20, 50, 90))  # the sea
    for i in range(8):
        draw.line([0, height * (0.66 + i * 0.04), width, height * (0.66 + i * 0.04)], fill=(40, 80, 130), width=2)
    image.save(path, optimize=True)


if __name__ == "__main__":
    sunset(HERE / "sunset.png")
    subprocess.run(
        ["espeak-ng", "-s", "150", "-w", str(HERE / "question.wav"), "What colour is the sky at sunset, and why?"],
        check=True,
    )
