"""Hugging Face Spaces entry point (README front matter: app_file). Settings come from the
Space's variables (PHI4MM_*); on ZeroGPU hardware the model runs under @spaces.GPU."""

from app.launch import build_web, launch_options
from app.settings import Settings

settings = Settings.from_env()
service, demo = build_web(settings)

if __name__ == "__main__":
    demo.launch(server_name="0.0.0.0", server_port=7860, **launch_options(settings))
