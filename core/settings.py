"""The one settings object, and the one home of every default: the CLI, the web app, the API,
media limits, load options and sampling all read theirs here (`DEFAULTS`). CLI flags override
environment variables (PHI4MM_<FIELD>), which override the defaults below.

It lives in `core/`, below every other room, so that each of them can read it without an import
cycle; it imports nothing from them."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, fields

from pydantic import TypeAdapter, ValidationError

DEFAULT_MODEL = "microsoft/Phi-4-multimodal-instruct"
REMOTE_INFLIGHT = 32  # a remote backend's generations at once by default (vLLM batches them itself)


@dataclass
class Settings:
    # Hub id or local folder of a Phi-4-multimodal checkpoint in transformers' native format.
    model: str = DEFAULT_MODEL
    # The model's name in the API (/v1/models, a request's `model`); None: the hub id, or "phi4mm"
    # for a local folder (a path on this server is never shown).
    served_model_name: str | None = None
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
    # Image and audio tokens one request may carry. Sized (our estimate, not measured on a GPU) so
    # one request cannot exhaust a 16 GB GPU: bf16 weights take ~11.2 GiB, and each token's KV cache
    # 32 layers x 8 KV heads x 128 x 2 x 2 bytes = 128 KiB, so 24,576 tokens take 3 GiB. It still
    # holds 30 minutes of speech in one prompt (12.5 audio tokens a second: 22,500) or two photos at
    # the full 36-crop budget (~9,600 tokens each).
    max_media_tokens: int = 24_576
    # Requests the local engine decodes together (continuous batching, each row with its own LoRA
    # adapter); 1 decodes one request at a time.
    max_batch: int = 16
    # Decode path: auto (compiled on CUDA, dynamic elsewhere), compiled (static KV cache and
    # torch.compile with CUDA graphs; start-up compiles the step for every batch bucket, any
    # adapter mix, and keeps it in the compile cache), static (the same cache, uncompiled) or
    # dynamic (a growing cache, eager).
    decode: str = "auto"
    # Prompt tokens prefilled per decode round while other requests are decoding (many short
    # prompts share a round), so a long new prompt costs them one chunk's time between two tokens,
    # not its whole prefill (a prompt's first chunk holds every image and audio placeholder; 0:
    # prompts go in whole, one a round).
    prefill_chunk_tokens: int = 512
    # Tokens of prompt beginnings (a system turn; a prompt whole, media and all, which its
    # conversation's next turn begins with), per adapter, whose keys and values the local engine
    # keeps, all together, so a request that begins with one starts its prefill after it (0: none
    # kept). At the released shapes a token's keys and values take 128 KiB in bf16, 256 in fp32 (a
    # CPU's default). None: as many as a tenth of the memory free once the model and the static
    # cache are in holds (in a container, of what its limit leaves), up to 65,536
    # (engine/prefix_cache.py `room_for`).
    prefix_cache_tokens: int | None = None
    # Tokens (prompt + answer) the static KV cache holds; longer requests decode on the dynamic
    # path. At most 4,096, where the model's long-RoPE factors take over.
    static_cache_tokens: int = 4096
    # Rows (requests at once) of the static KV cache; each is compiled for batch sizes 1, 2, 4, 8, 16
    # up to it. None: on a GPU as many as half its free memory holds (up to 16), on a CPU 1.
    static_cache_rows: int | None = None
    # Folder of compiled decode steps, one subfolder per model, torch version, device and cache shape,
    # so that a second start skips most of the compile wait; None: ~/.cache/phi4mm/compile.
    compile_cache: str | None = None
    # Generations run at once; None: max_batch for the local engine, 32 for a remote one (vLLM
    # batches them itself).
    max_inflight: int | None = None
    # Worker threads for blocking work (media decoding, preparing prompts, non-streamed answers):
    # anyio's limit, 40 by default. A stream holds none while it answers (app/sse_stream.py).
    worker_threads: int = 40
    # Requests queued while every generation slot is busy; past this, the web app shows a clear
    # "busy" error and the API answers 429 with Retry-After.
    queue_size: int = 16
    # Safety mitigations to turn OFF (comma-separated: general, voice, biometric). Logged as a
    # warning at start-up; leave empty in any deployment people use.
    disable_mitigations: str = ""
    # Operator's own safety instructions, added after ours and before any user system prompt.
    safety_instructions: str = ""
    # ZeroGPU (a Space with SPACES_ZERO_GPU): the longest GPU call one event asks for, in seconds.
    # Each asks for what its input needs, up to this; audio work that needs more is refused with a
    # message. The platform's own per-call limit depends on the visitor's plan; 300 is a guess.
    zero_gpu_max_s: int = 300
    # Address and port `phi4mm serve` listens on; loopback unless the operator opens it up.
    host: str = "127.0.0.1"
    port: int = 7860
    # When set, every route but /health requires it: `Authorization: Bearer <key>` for the API and
    # gradio_client, a sign-in page (/login, then a cookie) for the browser app. Prefer the
    # PHI4MM_API_KEY variable or `api_key_file`: a key on the command line shows in `ps`.
    api_key: str | None = None
    # A file whose first line is the API key (read once at start; it wins over `api_key`).
    api_key_file: str | None = None
    # Hours a browser sign-in lasts; signing out (/logout) ends it at once.
    login_hours: float = 12.0
    # Host names the server answers to besides localhost, its own address and host name, and any IP
    # address (comma-separated; "*" for any). Other names are refused: a web page that points its own
    # name at 127.0.0.1 (DNS rebinding) must not reach a server on this machine.
    allowed_hosts: str = ""
    # Web origins (scheme://host[:port], comma-separated; "*" for any) whose pages may send requests
    # here besides the app's own page. Other sites' pages are refused, so that visiting one cannot
    # run the model or upload files through the browser of someone on this machine.
    allowed_origins: str = ""
    # Parent of the server's private folder (uploads, Gradio's cache, the files it writes; mode 0700,
    # one per process, removed at exit); None: the system's temporary folder.
    tmp: str | None = None
    # A file in that folder unused for this many minutes is removed (a chat that goes on uses its
    # files again with every message, so it keeps them).
    file_ttl_minutes: float = 60.0
    # Serve /metrics without the key (for a scraper on a trusted network).
    metrics_public: bool = False
    # Responses API answers kept in memory for a later `previous_response_id` (the newest this many,
    # none older than the minutes below, at most the megabytes below together); each keeps its
    # conversation's media as sent.
    responses_kept: int = 64
    responses_kept_minutes: float = 60.0
    responses_kept_mb: int = 512
    # Engine backend: local (this process hosts the model) or openai (a remote compatible server).
    backend: str = "local"
    # The remote server's base URL for the openai backend, e.g. http://gpu-box:8000/v1.
    base_url: str | None = None
    # The key the openai backend sends to the remote server (its --api-key), if it wants one.
    remote_api_key: str | None = None

    def __post_init__(self) -> None:
        """Every number here is a count, a size or a time: a negative one (or NaN) is a mistake,
        refused by name whichever way it came (a flag, a variable, the code), before anything starts."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not value >= 0:  # NaN too
                raise ValueError(f"{f.name} (PHI4MM_{f.name.upper()}) is {value}; it cannot be negative.")
        if self.port > 65535:
            raise ValueError(f"port (PHI4MM_PORT) is {self.port}; a TCP port is 0-65535.")

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Defaults, then PHI4MM_* environment variables, then explicit non-None overrides. A
        variable is read as its field's annotated type (pydantic's lax conversion: "8" for an int,
        "yes"/"off" for a bool, "none" is not a number); a wrong one is refused by name."""
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            name = f"PHI4MM_{f.name.upper()}"
            raw = os.environ.get(name)
            if raw is None:
                continue
            try:
                values[f.name] = TypeAdapter(hints[f.name]).validate_python(raw.strip())
            except ValidationError:
                raise ValueError(f"{name}={raw!r} is not a valid {f.name} ({hints[f.name]}).") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def served_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        local = self.model.startswith(("/", ".", "~")) or os.path.exists(os.path.expanduser(self.model))
        return "phi4mm" if local else self.model

    def inflight(self) -> int:
        """Generations run at once, for admission, the page's model events and a remote backend's
        requests in flight alike."""
        return self.max_inflight or (REMOTE_INFLIGHT if self.backend == "openai" else self.max_batch)


DEFAULTS = Settings()  # the defaults alone: what every room reads its own defaults from
