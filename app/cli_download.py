"""`phi4mm download`: the model into the Hugging Face cache before the first run, with its size
first, then the hub's own progress (huggingface_hub 2.x: files done, and bytes on a terminal); an
interrupted download resumes where it stopped (snapshot_download keeps the files it has)."""

from __future__ import annotations

import sys
from pathlib import Path

from core.errors import ModelUnavailable
from core.settings import DEFAULT_MODEL


def gigabytes(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


def hub_revision(model: str, revision: str | None) -> str | None:
    from engine.model_config import DEFAULT_REVISION

    return revision if revision is not None else (DEFAULT_REVISION if model == DEFAULT_MODEL else None)


def local_folder(model: str) -> Path | None:
    """The folder `model` names, or None for a hub id (a path that does not exist is still a folder:
    a missing one, never a hub id)."""
    path = Path(model).expanduser()
    return path if path.exists() or model.startswith(("/", ".", "~")) else None


def is_cached(model: str, revision: str | None) -> bool:
    """Whether a load needs no download: a local folder, or a snapshot in the hub cache."""
    from huggingface_hub import snapshot_download

    if local_folder(model) is not None:
        return True
    try:
        snapshot_download(model, revision=hub_revision(model, revision), local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - not in the cache, or not a valid id: either way, not here
        return False


def size_line(model: str, files) -> str:
    """'12 files, 11.2 GB; 3.1 GB to download (8.1 GB already here)' from the hub's dry run."""
    total = sum(f.file_size or 0 for f in files)
    left = sum(f.file_size or 0 for f in files if f.will_download)
    here = f" ({gigabytes(total - left)} already here)" if total - left else ""
    return f"{model}: {len(files)} files, {gigabytes(total)}; {gigabytes(left)} to download{here}"


def cmd_download(args) -> int:
    import huggingface_hub.utils
    from huggingface_hub import constants, snapshot_download

    model = args.model or DEFAULT_MODEL
    folder = local_folder(model)
    if folder is not None:
        if not (folder / "config.json").is_file():
            missing = "There is no folder" if not folder.is_dir() else "There is no checkpoint in the folder"
            raise ModelUnavailable(f"{missing} {model!r}: nothing to download for a local path.")
        print(f"phi4mm: {model} is a local folder: nothing to download.", file=sys.stderr)
        return 0
    if constants.HF_HUB_OFFLINE:
        raise ModelUnavailable(f"cannot download {model}: offline mode is on (HF_HUB_OFFLINE).")
    revision = hub_revision(model, args.revision)
    try:
        huggingface_hub.utils.disable_progress_bars()  # the dry run's own "Fetching" bar says nothing
        try:
            files = snapshot_download(model, revision=revision, dry_run=True)
        finally:
            huggingface_hub.utils.enable_progress_bars()
        print(f"phi4mm: {size_line(model, files)}", file=sys.stderr, flush=True)
        path = snapshot_download(model, revision=revision)  # the hub's own bars
    except Exception as err:  # noqa: BLE001 - the hub's errors (no such repo, no network, disk full): one line
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelUnavailable(f"cannot download {model}: {detail}") from None
    print(path)
    return 0
