"""The error hierarchy: one root, leaves that are also the matching built-in type.

Catching ``RecorderError`` catches everything the recorder raises on purpose; catching the
built-in (``ValueError``, ``ConnectionError``, ``OSError``) keeps working for callers that do not
know about the recorder.
"""


class RecorderError(Exception):
    """Root of every error the recorder raises on purpose."""


class ConfigError(RecorderError, ValueError):
    """A setting is unknown or its value is not what the key expects."""


class DecodeError(RecorderError, ValueError):
    """A frame is not a valid miniTicker payload; the message is the quarantine reason."""


class SourceError(RecorderError, ConnectionError):
    """A websocket connection failed, stalled or delivered nothing."""


class StorageError(RecorderError, OSError):
    """The dataset root cannot be written or read as required."""


class UnsafePathError(StorageError):
    """A name taken from the network would resolve outside the storage root."""


class RestError(RecorderError, ConnectionError):
    """A REST request failed: no connection, a timeout, or an HTTP error status.

    Attributes:
        reason: a short code for logs and metrics (``"connection"``, ``"timeout"``,
            ``"http_500"``...), never an error message.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RateLimitedError(RestError):
    """The exchange refused a REST request for its rate limit (HTTP 429) or a ban (HTTP 418).

    Attributes:
        retry_after: seconds the exchange asked to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, reason: str, retry_after: float | None) -> None:
        super().__init__(message, reason)
        self.retry_after = retry_after


class ExchangeInfoError(RecorderError, ValueError):
    """An ``exchangeInfo`` answer cannot be used: not JSON, too large, or not its shape.

    Attributes:
        reason: a short code for logs and metrics (``"malformed"``, ``"too_large"``,
            ``"empty"``...).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NoContractsError(RecorderError, ValueError):
    """``symbols = "all"``, and the exchange's first answer lists no contract to record."""


class KlinesError(RecorderError, ValueError):
    """A ``klines`` answer cannot be used: not JSON, too large, or not rows of candles.

    Attributes:
        reason: a short code for logs (``"malformed"``, ``"too_large"``, ``"shape"``,
            ``"inexact"``, ``"unordered"``).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
