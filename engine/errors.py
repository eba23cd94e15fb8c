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


class Overloaded(Phi4mmError):
    """Every generation slot and queue place is taken; the caller should retry after `retry_after` s."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after
