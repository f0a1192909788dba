"""The items of one all-market ``!miniTicker@arr`` array: recorded, not recorded, or bad (sans-IO).

The array carries, every second, the ticker of every contract that changed: the recorded
ones and all the others (delivery contracts, contracts outside the symbol list). An item of a
valid contract that is not recorded is legitimate data, skipped and counted, never
quarantined. Every item is checked by :func:`~recorder.ingest.payload.check_payload` all the
same: a hostile value is bad whichever contract it claims to be. :mod:`recorder.ingest.decode`
turns the bad items of one frame into *one* rejection of the frame (:func:`items_reason`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec

from recorder.ingest.payload import PayloadWire, check_payload
from recorder.ingest.rejections import schema_reason
from recorder.model import MiniTicker

_PAYLOAD: Final = msgspec.json.Decoder(PayloadWire)
_NOT_AN_OBJECT: Final = "not_object: an array item is not an object"


@dataclass(slots=True)
class ArrayItems:
    """What the items of one array held.

    Attributes:
        events: the events of recorded contracts, in array order.
        not_recorded: valid items of contracts that are not recorded.
        bad: items rejected.
        first_reason: the reason of the first item rejected, if any.
    """

    events: list[MiniTicker] = field(default_factory=list)
    not_recorded: int = 0
    bad: int = 0
    first_reason: str | None = None


def read_items(
    items: Sequence[msgspec.Raw], subscribed: frozenset[str] | None, receive_time: int
) -> ArrayItems:
    """Sort an array's items (each its own JSON text) into events, skipped and bad ones."""
    read = ArrayItems()
    for item in items:
        if bytes(memoryview(item)[:1]) != b"{":
            # Spares msgspec's exception, a bad item's main cost, for the commonest kind: a
            # flood of half a million zeros costs about 0.2 s.
            checked: MiniTicker | str = _NOT_AN_OBJECT
        else:
            try:
                checked = check_payload(_PAYLOAD.decode(item), None, None, receive_time)
            except msgspec.ValidationError as exc:
                checked = schema_reason(exc)
        if isinstance(checked, str):
            read.bad += 1
            read.first_reason = read.first_reason or checked
        elif subscribed is None or checked.symbol in subscribed:
            read.events.append(checked)
        else:
            read.not_recorded += 1
    return read


def items_reason(read: ArrayItems, total: int) -> str | None:
    """The reason of the one rejection of an array with bad items; ``None`` without any.

    >>> items_reason(ArrayItems(bad=3, first_reason="not_decimal:c: 'x'"), 540)
    "not_decimal:c: 'x' (3 of 540 items rejected)"
    """
    if read.first_reason is None:
        return None
    return f"{read.first_reason} ({read.bad} of {total} items rejected)"
