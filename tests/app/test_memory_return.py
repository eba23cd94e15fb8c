"""Memory comes back after a big media request: 8000 x 8000 photos through the real processor
left RSS ~490 MB higher once freed (glibc kept it); the server's malloc tuning gives it back."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow  # a subprocess pushes six 8000 x 8000 photos through the processor

SCRIPT = textwrap.dedent("""
    import gc, io, sys
    from app.launch import tune_malloc
    if sys.argv[2] == "tuned":
        tune_malloc()
    from PIL import Image
    from engine.engine import Engine
    from engine.loading import LoadOptions
    from media.images import load_image
    from engine.request import GenerationRequest
    from media.parts import ImagePart, Message, TextPart
    def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    engine = Engine.load(LoadOptions(model=sys.argv[1], device="cpu"))
    buf = io.BytesIO(); Image.effect_noise((1000, 1000), 60).convert("RGB").resize((8000, 8000)).save(buf, "PNG")
    png, base = buf.getvalue(), rss()
    parts = [ImagePart(load_image(png, engine.limits)) for _ in range(6)] + [TextPart("x")]
    try:
        engine.prepare(GenerationRequest([Message("user", parts)]))
    except Exception:
        pass  # over the media-token budget: refused after the processor, which is what costs memory
    del parts; gc.collect()
    print(round(rss() - base))
""")


def retained_mb(checkpoint, mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(checkpoint), mode], capture_output=True, text=True, timeout=300, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_big_media_requests_give_their_memory_back(tiny_checkpoint):
    assert retained_mb(tiny_checkpoint, "tuned") < 150  # untuned: 476 MB (2-core CI-class machine)
