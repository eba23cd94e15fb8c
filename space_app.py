"""Hugging Face Spaces entry point (README front matter: app_file). Settings come from the
Space's variables (PHI4MM_*).

On ZeroGPU hardware (the Space sets SPACES_ZERO_GPU) a GPU exists only while a `@spaces.GPU`
function runs (ui/gpu.py decorates every event that runs the model), so nothing may touch it at
load or from a thread of its own:
- the model is loaded on the CPU and moved with `.to("cuda")` at load, as ZeroGPU documents;
- one request at a time, decoded in the event's own call (`max_batch` 1: no batching thread,
  which would outlive the call that started it);
- the dynamic decode path: the fast paths compile and self-check with the model at load.
"""

import dataclasses
import os

from app.launch import build_web, launch_options
from core.settings import Settings


def zero_gpu_engine(settings: Settings):
    import torch

    from engine.engine import Engine
    from engine.loading import LoadOptions, load_model
    from media.limits import MediaLimits

    options = dataclasses.replace(LoadOptions.from_settings(settings), device="cpu", dtype="bfloat16")
    model, processor, _ = load_model(options)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # ZeroGPU's CUDA at load is virtual
    engine = Engine(model.to(device), processor, device, settings.context_window, MediaLimits.from_settings(settings))
    engine.set_decode("dynamic")
    return engine


settings = Settings.from_env()
engine = None
if os.environ.get("SPACES_ZERO_GPU"):
    settings = dataclasses.replace(settings, max_batch=1, decode="dynamic", max_inflight=1)
    engine = zero_gpu_engine(settings)
web = build_web(settings, engine=engine)
service, demo = web.service, web.demo

if __name__ == "__main__":
    demo.launch(server_name="0.0.0.0", server_port=7860, **launch_options(settings, web.folder))
