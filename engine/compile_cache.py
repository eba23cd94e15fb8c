"""Compiled graphs kept on disk, so that a second start of the same model on the same machine
loads them instead of compiling again.

One folder per key: the model (its config), torch and transformers versions, the device, the
dtype and the slot cache's shape (rows, capacity, buckets), and our own step's source (a change to
it must not load a stale graph). Inside it, torch's own caches: inductor's FX graph cache and the
AOTAutograd cache (TORCHINDUCTOR_CACHE_DIR pointed there while compiling), plus the mega-cache
(`torch.compiler.save_cache_artifacts`), which bundles both into one file. Dynamo still traces on
a warm start; what is skipped is inductor's code generation and the C++/Triton compiler, which is
most of the wait.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers

log = logging.getLogger(__name__)

MEGA_CACHE = "artifacts.bin"
SOURCES = ("slot_decoder.py", "router.py")  # the code inside the compiled step


def default_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phi4mm" / "compile"


def cache_key(model, device: torch.device, **shape) -> str:
    here = Path(__file__).parent
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{os.uname().machine}"
    about = {
        "config": model.config.to_json_string(use_diff=False),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device_name,
        "code": [hashlib.sha256((here / name).read_bytes()).hexdigest() for name in SOURCES],
        **{k: str(v) for k, v in shape.items()},
    }
    return hashlib.sha256(json.dumps(about, sort_keys=True).encode()).hexdigest()[:24]


@contextmanager
def compile_cache(folder: str | Path | None, key: str):
    """Compiles inside this block read and write the key's folder -> yields whether it held
    artifacts from an earlier start. None: torch's default caches, untouched."""
    if folder is None:
        yield False
        return
    path = Path(folder).expanduser() / key
    path.mkdir(parents=True, exist_ok=True)
    mega = path / MEGA_CACHE
    warm = mega.is_file()
    if warm:
        try:
            torch.compiler.load_cache_artifacts(mega.read_bytes())
        except Exception as err:  # noqa: BLE001 - a damaged or foreign file: compile as if cold
            log.warning("the compile cache %s could not be read (%s); compiling afresh", mega, err)
            warm = False
    saved = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path / "inductor")
    try:
        yield warm
        artifacts = torch.compiler.save_cache_artifacts()
        if artifacts is not None:
            partial = mega.with_suffix(".partial")
            partial.write_bytes(artifacts[0])
            partial.replace(mega)  # never a half-written file where a later start reads
    finally:
        if saved is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = saved
