"""Hugging Face Spaces entry point (README front matter: app_file), started as Spaces starts it:
`python space_app.py`. It serves what `phi4mm serve` serves, behind the same front door
(app/space.py); settings come from the Space's variables (PHI4MM_*, PHI4MM_API_KEY included),
listening on 0.0.0.0:7860 unless PHI4MM_HOST / PHI4MM_PORT say otherwise.

On ZeroGPU hardware (the Space sets SPACES_ZERO_GPU) `spaces` is imported before anything else,
torch included, as ZeroGPU asks; the engine is loaded as ZeroGPU needs it (app/zero_gpu.py).
"""

try:
    import spaces  # noqa: F401 - first: ZeroGPU must patch torch before anything touches CUDA
except ImportError:  # not on Spaces
    pass

import os

from app.space import launch_space, space_settings

if __name__ == "__main__":
    settings, engine = space_settings(), None
    if os.environ.get("SPACES_ZERO_GPU"):
        from app.zero_gpu import zero_gpu_setup

        settings, engine = zero_gpu_setup(settings)
    launch_space(settings, engine)
