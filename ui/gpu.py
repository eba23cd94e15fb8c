"""On Hugging Face Spaces (ZeroGPU), GPU work must run inside `@spaces.GPU`; elsewhere the
decorator is a no-op."""

from __future__ import annotations

try:
    import spaces

    gpu = spaces.GPU
except ImportError:  # not on Spaces

    def gpu(fn):
        return fn
