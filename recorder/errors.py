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
