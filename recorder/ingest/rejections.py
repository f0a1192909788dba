"""How the decoder words a rejection: its reason codes and details, and the raw text it keeps.

Nothing that arrives is trusted. A rejection's ``raw`` is the offending text, cut to
:data:`MAX_RAW_BYTES` (the reason then says so, with the original size); ``raw_size`` and
``raw_sha256`` always describe the whole text as received, so a flood of huge frames costs
the quarantine a few KiB each and identical frames can still be told apart. Its ``reason``
starts with a short code that groups well in metrics (:func:`recorder.model.reason_code`),
followed by ``": "`` and a human detail:

=========================  =================================================================
code                       meaning
=========================  =================================================================
``too_large``              the frame exceeds ``max_frame_bytes``; it is not parsed
``not_utf8``               the frame is not valid UTF-8
``not_json``               the frame is not one JSON document
``too_deep``               the frame nests arrays or objects too deep to be read (see
                           :mod:`recorder.ingest.nesting`); a frame with deep parts that can
                           be read without them gets the reason of what is left instead
``not_object``             the frame, its ``data`` or an array item is not a JSON object (an
                           array frame outside the all-market mode included)
``missing_field:<f>``      required field ``<f>`` is absent
``wrong_type:<f>``         field ``<f>`` has the wrong JSON type (a number where Binance sends
                           a string, ``E`` as a string, ``st`` out of range...)
``not_decimal:<f>``        field ``<f>`` is a string but not ``digits[.digits]``
``inexact_decimal:<f>``    field ``<f>`` does not fit ``decimal128(38, 18)`` exactly
                           (see :mod:`recorder.ingest.decimals`)
``bad_event_time``         ``E`` is outside [2017-01-01, 2100-01-01)
``implausible_event_time`` ``E`` is too far from the local clock and from the other events'
                           (not the decoder's: :mod:`recorder.ingest.event_times`)
``wrong_event_type``       ``e`` is not ``"24hrMiniTicker"``
``unsafe_symbol``          ``s`` fails :func:`recorder.symbols.is_valid_symbol`
``unsubscribed_symbol``    ``s`` is not one of the subscribed symbols (an all-market array
                           item of such a contract is skipped instead: it is not recorded)
``stream_mismatch``        the combined frame's stream name does not belong to the payload
``decode_failed``          decoding raised what it never should (a bug); the frame is kept
                           here and the service goes on
=========================  =================================================================
"""

import hashlib
import re
from collections.abc import Iterable
from typing import Final

import msgspec

from recorder.ingest.decimals import is_exact_decimal, is_plain_decimal, written_digits
from recorder.model import DECIMAL_INTEGER_DIGITS, DECIMAL_PRECISION, DECIMAL_SCALE, Rejection

MAX_RAW_BYTES: Final = 4 * 1024
"""A rejection keeps at most this many bytes of the offending text (and its size and hash)."""

_DETAIL_CHARS: Final = 80
"""Values quoted in a reason's detail are cut to this many characters."""

_MISSING_FIELD: Final = re.compile(r"Object missing required field `([^`]*)`")
_AT_FIELD: Final = re.compile(r" - at `\$\.(\w+)")


def build_rejection(
    raw: str | bytes, reason: str, receive_time: int, connection_id: str | None
) -> Rejection:
    """Build a rejection keeping at most :data:`MAX_RAW_BYTES` of the offending text.

    The whole text's size and SHA-256 are kept beside it.

    Args:
        raw: the offending frame or array item, as received.
        reason: the reason, code first; a truncation note is appended when ``raw`` is cut.
        receive_time: local wall clock at arrival, microseconds since the epoch.
        connection_id: the connection that delivered it.
    """
    # backslashreplace keeps what is not UTF-8 visible and exact (\xff, a lone \udcff) for
    # whoever reads the quarantine, where U+FFFD would hide it.
    data = raw.encode("utf-8", "backslashreplace") if isinstance(raw, str) else raw
    size, digest = len(data), hashlib.sha256(data).hexdigest()
    if size > MAX_RAW_BYTES:
        reason = f"{reason} (raw truncated to {MAX_RAW_BYTES} of {len(data)} bytes)"
        end = MAX_RAW_BYTES
        while end > MAX_RAW_BYTES - 3 and data[end] & 0xC0 == 0x80:
            end -= 1  # do not cut a multi-byte character in half
        data = data[:end]
    text = data.decode("utf-8", "backslashreplace")
    return Rejection(
        raw=text,
        reason=reason,
        receive_time=receive_time,
        connection_id=connection_id,
        raw_size=size,
        raw_sha256=digest,
    )


def quote(value: str) -> str:
    """Return ``repr(value)``, cut short enough for a log line.

    >>> quote("BTCUSDT")
    "'BTCUSDT'"
    >>> quote("x" * 100).endswith("'... (100 characters)")
    True
    """
    if len(value) > _DETAIL_CHARS:
        return f"{value[:_DETAIL_CHARS]!r}... ({len(value)} characters)"
    return repr(value)


def bad_event_time_reason(event_time: int) -> str:
    """Say that ``E`` is outside the years a real event can carry."""
    # A thousand-digit E would make a useless detail; say which side it fell off instead.
    shown = str(event_time) if abs(event_time) < 10**20 else ("huge" if event_time > 0 else "-huge")
    return f"bad_event_time: E={shown} is outside [2017-01-01, 2100-01-01)"


def decimal_reason(fields: Iterable[tuple[str, str]]) -> str:
    """Say which of a payload's decimal strings fails first, and how.

    Args:
        fields: ``(JSON key, text)`` of each decimal field, in payload order; at least one
            must fail :func:`~recorder.ingest.decimals.is_exact_decimal`.
    """
    for field, text in fields:
        if is_exact_decimal(text):
            continue
        if not is_plain_decimal(text):
            return f"not_decimal:{field}: {quote(text)} is not digits[.digits]"
        whole, _, fraction = text.partition(".")
        return (
            f"inexact_decimal:{field}: {quote(text)} has {len(whole.lstrip('0'))} integer, "
            f"{len(fraction.rstrip('0'))} fractional and {written_digits(text)} written "
            f"significant digits; decimal128({DECIMAL_PRECISION}, {DECIMAL_SCALE}) takes at "
            f"most {DECIMAL_INTEGER_DIGITS}, {DECIMAL_SCALE} and {DECIMAL_PRECISION}"
        )
    msg = "no decimal field fails its check"
    raise AssertionError(msg)


def schema_reason(error: msgspec.ValidationError) -> str:
    """Turn msgspec's verdict on a payload, wrapper or reply into a reason."""
    message = str(error)
    missing = _MISSING_FIELD.match(message)
    if missing is not None:
        return f"missing_field:{missing[1]}: {message}"
    field = _AT_FIELD.search(message)
    if field is None:
        # The only error msgspec reports at the document's root is its JSON type.
        return f"not_object: {message}"
    if field[1] == "E" and "out of range" in message:
        return f"bad_event_time: {message}"
    return f"wrong_type:{field[1]}: {message}"
