"""The engine's typed errors. Every message is written for the person who sent the request."""


class Phi4mmError(Exception):
    """Base of every error we raise on purpose; `str(err)` is a message a user understands."""


class InvalidRequest(Phi4mmError, ValueError):
    """A parameter out of range, an unknown part type, an empty conversation."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


class PromptTooLong(InvalidRequest):
    """The rendered prompt (text plus media tokens) does not fit the context window."""


class MediaError(InvalidRequest):
    """A media part that cannot be decoded into model inputs."""


class ModelUnavailable(Phi4mmError):
    """Weights are missing locally and cannot be fetched; the message says what to do."""


class AdapterMissing(ModelUnavailable, RuntimeError):
    """A request needs a LoRA adapter the checkpoint did not bring: refused, never answered without it."""


class Overloaded(Phi4mmError):
    """Every generation slot and queue place is taken; the caller should retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class ShuttingDown(ModelUnavailable):
    """The server is stopping: open generations end with this, new ones are refused."""

    def __init__(self):
        super().__init__("The server is shutting down; this answer was cut short. Please retry in a moment.")


class GenerationFailed(Phi4mmError):
    """The model failed on this one request (an exception or out of memory); others go on."""


def first_line(err: BaseException) -> str:
    """An exception's first line of text (its type's name when it has none)."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def generation_failed(err: BaseException) -> Phi4mmError:
    """Any error raised while generating -> the one-line error its client gets. Ours pass through;
    anything else is the server's fault and is described without its Python internals."""
    if isinstance(err, Phi4mmError):
        return err
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return GenerationFailed(
            "The server ran out of memory while answering this request; try a shorter conversation or less media."
        )
    # Not transient: the same request fails the same way again, so no "try again"; the error's type
    # names the problem without a traceback or a server path.
    return GenerationFailed(
        f"Generating this answer failed on the server ({type(err).__name__}; it has been logged). "
        "The same request will fail again: change the message or its media, or start a new chat."
    )


def release_memory(err: BaseException) -> None:
    """After a failed forward pass: give the allocator's cached blocks back, so an out-of-memory
    on one request does not leave the next one short of memory."""
    import torch

    if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()
