"""Load the checkpoint with transformers' native classes (never remote code) plus its LoRA adapters
(the table in engine/model_family.py)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from core.errors import ModelUnavailable, first_line
from core.settings import DEFAULT_MODEL, DEFAULTS, Settings
from engine.model_config import DEFAULT_REVISION
from engine.model_family import PHI4, Phi4Family, adapter_specs

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadOptions:
    """Which checkpoint to load and how; the fields mean what Settings' fields of the same names do."""

    model: str = DEFAULTS.model  # hub id or local folder
    revision: str | None = DEFAULTS.revision  # None: refs/pr/70 for the default hub model
    device: str = DEFAULTS.device  # auto | cpu | cuda
    dtype: str = DEFAULTS.dtype  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16 | float16
    attention: str = DEFAULTS.attention  # auto (sdpa) | sdpa | eager | flash_attention_2
    quantize: str = DEFAULTS.quantize  # none | 8bit | 4bit

    @classmethod
    def from_settings(cls, settings: Settings) -> "LoadOptions":
        return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailable("`--device cuda` was asked for, but PyTorch sees no CUDA GPU. Use `--device cpu`.")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[dtype]


def resolve_attention(attention: str) -> str:
    # SDPA picks PyTorch's own flash kernels where it can, and it is what the static-cache,
    # compiled decode path needs (flash-attn's kernels would attend to the unused cache slots)
    return "sdpa" if attention == "auto" else attention


def resolve_revision(options: LoadOptions) -> str | None:
    if options.revision is not None:
        return options.revision
    return DEFAULT_REVISION if options.model == DEFAULT_MODEL else None


def hub_source(model: str, revision: str | None) -> str:
    """Where to load a hub model from: its snapshot in the local cache when there is one (no network
    touched), else the hub itself, once a short check finds it reachable. Unreachable, loading used
    to retry for minutes and print a hundred lines of warnings before its one useful message."""
    import os
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(model, revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not in the cache (or no such repo): the hub decides below
        pass
    if constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise ModelUnavailable(
            missing_weights_message(
                model, revision, "it is not in the local cache and offline mode is on (HF_HUB_OFFLINE)."
            )
        )
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=5).close()
    except OSError as err:
        raise ModelUnavailable(
            missing_weights_message(
                model,
                revision,
                f"it is not in the local cache and {endpoint.hostname} cannot be reached "
                f"({(err.strerror or str(err)).lower()}).",
            )
        ) from None
    return model


def missing_weights_message(model: str, revision: str | None, reason: str) -> str:
    rev = f" --revision {revision}" if revision else ""
    return (
        f"Could not load the model {model!r}{' at revision ' + revision if revision else ''}: {reason}\n"
        "Do one of these:\n"
        f"  - download it where the Hugging Face Hub is reachable:  hf download {model}{rev}\n"
        "  - point at a local copy:  --model /path/to/Phi-4-multimodal-instruct\n"
        "  - try the app without real weights:  phi4mm tiny-checkpoint ./tiny  then  --model ./tiny"
    )


def _quantization_config(quantize: str, dtype: torch.dtype, family: Phi4Family):
    if quantize == "none":
        return None
    from transformers import BitsAndBytesConfig

    # LoRA layers are added afterwards by PEFT and are never quantized
    keep = list(family.full_precision_modules)
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=keep)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        llm_int8_skip_modules=keep,
    )


def load_model(options: LoadOptions, family: Phi4Family = PHI4):
    """Return (model, processor, device). Raises ModelUnavailable with a what-to-do message."""
    from huggingface_hub.errors import HFValidationError
    from transformers import AutoProcessor

    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    revision = resolve_revision(options)
    local = Path(options.model).expanduser()
    looks_local = local.exists() or options.model.startswith(("/", ".", "~"))
    if looks_local and not local.is_dir():  # a path, not a hub id: no `hf download` to suggest
        raise ModelUnavailable(
            f"There is no folder {options.model!r}. Point --model at a checkpoint folder, give a hub id, "
            "or try the app without real weights:  phi4mm tiny-checkpoint ./tiny  then  --model ./tiny"
        )
    if looks_local and not (local / "config.json").is_file():
        raise ModelUnavailable(missing_weights_message(options.model, None, "there is no checkpoint in that folder."))
    source = str(local) if looks_local else hub_source(options.model, revision)
    fetch = revision if source == options.model else None  # a folder on disk has no revision to resolve
    try:
        processor = AutoProcessor.from_pretrained(source, revision=fetch)
    except (OSError, HFValidationError, ValueError) as err:
        raise ModelUnavailable(missing_weights_message(options.model, revision, first_line(err))) from None

    quantization = _quantization_config(options.quantize, dtype, family)
    model_class = family.load_class()
    attention = resolve_attention(options.attention)
    kwargs = dict(revision=fetch, dtype=dtype, quantization_config=quantization)
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    try:
        try:
            model = model_class.from_pretrained(source, attn_implementation=attention, **kwargs)
        except (ValueError, ImportError) as err:
            if options.attention != "auto":
                raise
            log.warning("attention %s unavailable (%s); falling back to eager", attention, first_line(err))
            attention = "eager"
            model = model_class.from_pretrained(source, attn_implementation=attention, **kwargs)
        _load_adapters(model, source, fetch)
    except OSError as err:
        raise ModelUnavailable(missing_weights_message(options.model, revision, first_line(err))) from None
    model.eval()
    if problems := token_id_problems(processor, model.config, family):
        raise ModelUnavailable(f"The checkpoint {options.model!r} does not agree with itself: " + "; ".join(problems))
    log.info(
        "loaded %s (revision=%s) on %s as %s, attention=%s, quantize=%s",
        options.model,
        revision,
        device,
        dtype,
        attention,
        options.quantize,
    )
    return model, processor, device


def _load_adapters(model, source: str, revision: str | None) -> None:
    """Every adapter of the table the checkpoint has. In a folder on disk, one whose folder is
    missing is left out (its requests are refused; `phi4mm doctor` names it); from the hub, each
    is loaded or the load fails."""
    for spec in adapter_specs():
        if Path(source).is_dir() and not (Path(source) / spec.folder / "adapter_config.json").is_file():
            log.warning("the checkpoint has no %s/ folder: the %s adapter is not loaded", spec.folder, spec.name)
            continue
        adapter_kwargs = {"subfolder": spec.folder, **({"revision": revision} if revision else {})}
        model.load_adapter(source, adapter_name=spec.name, adapter_kwargs=adapter_kwargs)


def token_id_problems(processor, config, family: Phi4Family = PHI4) -> list[str]:
    """What is wrong between the tokenizer's and the config's token ids, naming the file to fix:
    a media placeholder the processor would write under one id while the model fills another
    would silently leave every image or clip out of the answer."""
    vocab = processor.tokenizer.get_vocab()
    problems = []
    for what, token, config_id in family.media_tokens(processor, config):
        if vocab.get(token) != config_id:
            problems.append(
                f"the {what} token {token!r} is id {vocab.get(token)} in tokenizer.json but {config_id} in config.json"
            )
    problems += [
        f"the end token {token!r} is missing from tokenizer.json" for token in family.end_tokens if token not in vocab
    ]
    return problems
