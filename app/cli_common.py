"""What the `phi4mm` commands share: quiet libraries, the settings from the flags, the service,
answers streamed to stdout with one metrics line, and files written whole or not at all."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path


def quiet_libraries(verbose: bool) -> None:
    """Keep stdout for answers and stderr for what matters: library load reports and warnings stay
    off; --verbose adds our own loading details. Called by each command once its cheap checks pass,
    so a usage error never waits for transformers to import."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for ours in ("engine", "app"):
        logging.getLogger(ours).setLevel(logging.INFO if verbose else logging.WARNING)
    warnings.filterwarnings("ignore")
    # torch.cuda warns "No CUDA runtime is found, using CUDA_HOME=..." through torch.utils.cpp_extension's
    # logger when CUDA_HOME is set on a machine without a GPU (doctor and summarize met it); we know
    # why, and `doctor` says which device is used.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes").setLevel(logging.CRITICAL)
    import transformers

    transformers.logging.set_verbosity_error()
    # transformers' own bars (weights loading) only: disable_progress_bar() would also silence the
    # hub's download bars, and a first run then showed one "loading..." line for a 12 GB download
    import huggingface_hub.utils

    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.enable_progress_bars()


def settings_from(args, log_loading: bool = True):
    """The settings, with every flag that names a settings field (its dest is the field's name)
    overriding it: the flags are the only list of which settings a command takes. `log_loading`:
    --verbose also logs how the model loaded (serve, doctor); where it means one metrics line per
    answer (ask, chat, transcribe), that line alone."""
    from dataclasses import fields

    from core.settings import Settings

    quiet_libraries(log_loading and getattr(args, "verbose", False))
    try:
        return Settings.from_env(**{f.name: getattr(args, f.name, None) for f in fields(Settings)})
    except ValueError as err:  # a wrong flag or PHI4MM_* variable: one line, no traceback
        print(f"phi4mm: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def open_service(settings):
    from app.service import open_service

    return open_service(settings)


def metrics_line(metrics) -> str:
    return (
        f"adapter={metrics.adapter} prompt_tokens={metrics.prompt_tokens} "
        f"completion_tokens={metrics.completion_tokens} ttft_ms={metrics.ttft_s * 1000:.1f} "
        f"tok_s={metrics.tokens_per_s:.1f}"
    )


def print_metrics(final) -> None:
    print(metrics_line(final.metrics), file=sys.stderr)


def stream_to_stdout(replies, verbose: bool) -> None:
    """Print replies as they come. A guard refusal cannot un-print what was
    shown (never the blocked text itself), so it starts on a line of its own."""
    final = None
    for reply in replies:
        sys.stdout.write(("\n" + reply.text) if reply.replace else reply.text)
        sys.stdout.flush()
        final = reply
    sys.stdout.write("\n")
    if verbose and final is not None and final.metrics is not None:
        print_metrics(final)


def write_whole(path: str | Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`: an interrupt or a
    crash leaves the old file or none, never a part of the new one (rename is atomic in one folder)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
