"""The one settings object. CLI flags override environment variables (PHI4MM_<FIELD>), which
override the defaults below."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from engine.limits import MediaLimits
from engine.model_config import DEFAULT_MODEL
from safety.mitigations import MitigationPolicy


@dataclass
class Settings:
    # Hub id or local folder of a Phi-4-multimodal checkpoint in transformers' native format.
    model: str = DEFAULT_MODEL
    # Hub revision; None picks refs/pr/70 (the native-format weights) for the default model.
    revision: str | None = None
    # Where the model runs: auto (CUDA when available), cpu or cuda.
    device: str = "auto"
    # Weight dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 or float16.
    dtype: str = "auto"
    # Attention kernel: auto (sdpa, which uses PyTorch's flash kernels; eager as fallback), sdpa,
    # eager or flash_attention_2 (the flash-attn package; decoding then takes the dynamic path).
    attention: str = "auto"
    # bitsandbytes weight quantization of the decoder: none, 8bit or 4bit (a memory tool, not a speed-up).
    quantize: str = "none"
    # Most tokens prompt + answer may use; None means the model's own window (131,072).
    context_window: int | None = None
    # Default cap on answer length when a request names none.
    max_new_tokens: int = 1024
    # Dynamic multi-crop budget per image (1-64; the processor's default 36, vLLM's examples 16).
    max_crops: int = 36
    # Frames sampled uniformly from a video (the report's video evaluation used 16).
    video_frames: int = 16
    # Longest audio one chat turn takes, in seconds; longer recordings go to summarisation.
    max_chat_audio_seconds: int = 180
    # Largest media file or upload, in MB.
    max_upload_mb: int = 200
    # Image and audio tokens one request may carry (engine/limits.py says how the default is sized).
    max_media_tokens: int = MediaLimits.max_media_tokens
    # Requests the local engine decodes together (continuous batching, each row with its own LoRA
    # adapter); 1 decodes one request at a time.
    max_batch: int = 16
    # Decode path: auto (compiled on CUDA, dynamic elsewhere), compiled (static KV cache and
    # torch.compile with CUDA graphs; start-up compiles one graph per adapter, about a minute each
    # at full size), static (the same cache, uncompiled) or dynamic (a growing cache, eager).
    decode: str = "auto"
    # Tokens (prompt + answer) the static KV cache holds; longer requests decode on the dynamic
    # path. At most 4,096, where the model's long-RoPE factors take over.
    static_cache_tokens: int = 4096
    # Generations run at once; None: max_batch for the local engine, 32 for a remote one (vLLM
    # batches them itself).
    max_inflight: int | None = None
    # Requests queued while every generation slot is busy; past this, the web app shows a clear
    # "busy" error and the API answers 429 with Retry-After.
    queue_size: int = 16
    # Safety mitigations to turn OFF (comma-separated: general, voice, biometric). Logged as a
    # warning at start-up; leave empty in any deployment people use.
    disable_mitigations: str = ""
    # Operator's own safety instructions, added after ours and before any user system prompt.
    safety_instructions: str = ""
    # Address and port `phi4mm serve` listens on; loopback unless the operator opens it up.
    host: str = "127.0.0.1"
    port: int = 7860
    # When set, every route but /health requires it: `Authorization: Bearer <key>` for the API and
    # gradio_client, a sign-in page (/login, then a cookie) for the browser app.
    api_key: str | None = None
    # Serve /metrics without the key (for a scraper on a trusted network).
    metrics_public: bool = False
    # Engine backend: local (this process hosts the model) or openai (a remote compatible server).
    backend: str = "local"
    # The remote server's base URL for the openai backend, e.g. http://gpu-box:8000/v1.
    base_url: str | None = None
    # The key the openai backend sends to the remote server (its --api-key), if it wants one.
    remote_api_key: str | None = None

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults, then PHI4MM_* environment variables, then explicit non-None overrides."""
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"PHI4MM_{f.name.upper()}")
            if raw is not None:
                if f.type in ("int", "int | None"):
                    values[f.name] = int(raw)
                elif f.type == "bool":
                    values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def inflight(self) -> int:
        return self.max_inflight or (32 if self.backend == "openai" else self.max_batch)

    def media_limits(self) -> MediaLimits:
        return MediaLimits(
            max_file_bytes=self.max_upload_mb * 2**20,
            max_crops=self.max_crops,
            video_frames=self.video_frames,
            max_chat_audio_seconds=self.max_chat_audio_seconds,
            max_media_tokens=self.max_media_tokens,
        )

    def mitigation_policy(self) -> MitigationPolicy:
        disabled = frozenset(n.strip() for n in self.disable_mitigations.split(",") if n.strip())
        return MitigationPolicy(disabled=disabled, extra=self.safety_instructions)

    def load_options(self):
        from engine.loading import LoadOptions  # imports torch: not at `phi4mm --help`

        return LoadOptions(
            model=self.model,
            revision=self.revision,
            device=self.device,
            dtype=self.dtype,
            attention=self.attention,
            quantize=self.quantize,
        )


DEFAULTS = Settings()  # the defaults alone, for help texts
