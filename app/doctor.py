"""`phi4mm doctor`: what a user runs when something is off. Versions, the device, where the model
resolves from and whether its files are there, the checkpoint's own consistency, the decode path
with its start-up self-check, and a last line `ready` (exit 0) or what is wrong (exit 1).
It never touches the network: a hub model is looked up in the local cache only."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
from pathlib import Path

from core.settings import Settings
from engine.model_family import adapter_names, adapter_specs

PACKAGES = ("phi4mm", "torch", "transformers", "peft", "gradio", "bitsandbytes")


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> str:
    import torch

    cuda = f"torch built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
    return ", ".join(f"{name} {package_version(name)}" for name in PACKAGES) + f" ({cuda})"


def device_line() -> str:
    import torch

    if not torch.cuda.is_available():
        return f"CPU only (no CUDA GPU visible), {os.cpu_count()} cores; attention: sdpa"
    props = torch.cuda.get_device_properties(0)
    kernels = [
        name
        for name, on in (
            ("flash", torch.backends.cuda.flash_sdp_enabled()),
            ("memory-efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
        )
        if on
    ]
    flash_attn = "installed" if importlib.util.find_spec("flash_attn") else "not installed"
    bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
    return (
        f"{props.name}, {props.total_memory / 2**30:.1f} GiB, bf16 {bf16}; "
        f"attention: sdpa ({', '.join(kernels) or 'math only'}), flash-attn {flash_attn}"
    )


def resolve_model(settings: Settings) -> tuple[Path | None, str]:
    """(local folder or None, a line saying where the model comes from)."""
    from engine.loading import LoadOptions, resolve_revision

    local = Path(settings.model).expanduser()
    if local.exists() or settings.model.startswith(("/", ".", "~")):
        return (local if (local / "config.json").is_file() else None), f"local folder {local}"
    revision = resolve_revision(LoadOptions.from_settings(settings))
    where = f"hub {settings.model} at revision {revision or 'main'}"
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(settings.model, revision=revision, local_files_only=True)
        return Path(folder), where + ", in the local cache"
    except Exception:  # noqa: BLE001 - not cached (or no such repo): said below, never fetched
        return None, where + ", not in the local cache"


def file_problems(folder: Path) -> list[str]:
    problems = [f"{name} is missing" for name in ("config.json", "tokenizer.json") if not (folder / name).is_file()]
    if not list(folder.glob("*.safetensors")):
        problems.append("no *.safetensors weights")
    problems += [
        f"the {spec.name} adapter folder {spec.folder}/ is missing"
        for spec in adapter_specs()
        if not (folder / spec.folder / "adapter_config.json").is_file()
    ]
    return problems


def run_doctor(settings: Settings, say=print) -> int:
    say(f"phi4mm {package_version('phi4mm')}")
    say(f"versions: {versions()}")
    say(f"device: {device_line()}")
    if settings.backend != "local":
        say(f"backend: {settings.backend} at {settings.base_url} (the model runs there; nothing to check here)")
        say("ready")
        return 0
    folder, where = resolve_model(settings)
    say(f"model: {where}")
    if folder is None:
        say(
            f"not ready: the model's files are not on this machine. Download them where the hub is reachable: "
            f"hf download {settings.model}" + (" --revision refs/pr/70" if "hub" in where else "")
        )
        return 1
    if problems := file_problems(folder):
        say(f"not ready: in {folder}: " + "; ".join(problems))
        return 1
    say(f"files: config, tokenizer, weights and the {' and '.join(adapter_names())} adapters in {folder}")
    from core.errors import Phi4mmError
    from engine.engine import Engine
    from engine.loading import LoadOptions
    from media.limits import MediaLimits

    try:
        options = dataclasses.replace(LoadOptions.from_settings(settings), model=str(folder), revision=None)
        engine = Engine.load(options, settings.context_window, MediaLimits.from_settings(settings))
    except Phi4mmError as err:
        say(f"not ready: {err}")
        return 1
    say(
        f"checkpoint: token ids agree (image {engine.media_token_ids[0]}, audio {engine.media_token_ids[1]}); "
        f"adapters {', '.join(engine.adapters) or 'none'}; dtype {str(engine.dtype).removeprefix('torch.')}"
    )
    mode = engine.set_decode(settings.decode, settings.static_cache_tokens)
    if engine.decode_fallback:
        say(f"decode: {mode}: the fast path is off ({engine.decode_fallback})")
    elif mode == "dynamic":
        say("decode: dynamic (no fast path chosen, so nothing to self-check)")
    else:
        say(f"decode: {mode}, self-check passed in {engine.self_check_s:.1f} s")
    say("ready" if not engine.decode_fallback else "ready, decoding dynamically (see the decode line)")
    return 0
