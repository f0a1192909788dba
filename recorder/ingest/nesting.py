"""Cut JSON nesting that is too deep for a recursive decoder, without recursing (sans-IO).

msgspec decodes, and skips unknown fields, by recursing once per level of nesting, and gives
up with :class:`RecursionError` near the interpreter's recursion limit: a frame nested a
thousand levels deep cannot be read at all, even when the depth is only in a field the
decoder would ignore. No field a ``24hrMiniTicker`` frame is read for lies deeper than three
levels, so :func:`cut_deep_nesting` replaces every array or object that opens deeper than a
bound with an empty one of the same kind (``[]``, ``{}``), and the copy decodes normally: a
valid payload with a deeply nested extra field is still an event, and a field that must be a
string but holds a deep array is still "got array".

Cost: one regular-expression pass in C, plus Python work per *run* of brackets and per string
(``[[[[...]]]]`` of any depth is two runs), so at most a few hundred milliseconds for a
megabyte built to be slow, and nothing for a frame msgspec could read.
"""

import re
from typing import AnyStr, Final

MAX_NESTING: Final = 64
"""Arrays and objects opened deeper than this are cut; far below any recursion limit."""

# A JSON string (escapes included), a run of openers or a run of closers: group 1, 2 or 3.
# Brackets inside strings are not structure, so strings are matched whole and skipped.
_TEXT_TOKENS: Final = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")|([\[{]+)|([\]}]+)', re.DOTALL)
_BYTE_TOKENS: Final = re.compile(rb'("[^"\\]*(?:\\.[^"\\]*)*")|([\[{]+)|([\]}]+)', re.DOTALL)
_OPENERS: Final = 2
_CLOSERS: Final = 3


def cut_deep_nesting(frame: AnyStr, max_nesting: int = MAX_NESTING) -> AnyStr | None:
    """Return ``frame`` with every container opened below ``max_nesting`` levels emptied.

    >>> cut_deep_nesting('{"a":[[[1]]],"b":"[[["}', max_nesting=2)
    '{"a":[[]],"b":"[[["}'
    >>> cut_deep_nesting(b'[[[[', max_nesting=2) is None
    True

    Args:
        frame: a JSON text, as ``str`` or UTF-8 ``bytes``.
        max_nesting: the deepest level kept; the document's top-level container is level 1.

    Returns:
        The shorter copy (the frame itself when nothing is that deep), or ``None`` when its
        brackets do not balance, so no JSON document can be made of it. Inside what is cut only
        that balance is checked; a cut container keeps its own opener and closer (``[}`` stays
        invalid), and everything kept is left for the decoder to check.
    """
    pattern: re.Pattern[AnyStr] = _BYTE_TOKENS if isinstance(frame, bytes) else _TEXT_TOKENS
    pieces: list[AnyStr] = []
    depth = 0
    kept_until = 0
    cut_from = -1  # where the container being cut opens; -1 while nothing is being cut
    for match in pattern.finditer(frame):
        kind = match.lastindex
        if kind == _OPENERS:
            run = match.end() - match.start()
            if cut_from < 0 and depth + run > max_nesting:
                cut_from = match.start() + max_nesting - depth
            depth += run
        elif kind == _CLOSERS:
            run = match.end() - match.start()
            if cut_from >= 0 and depth - run <= max_nesting:
                # The closer that takes the depth back to max_nesting ends the cut container.
                cut_to = match.start() + depth - max_nesting
                pieces.append(frame[kept_until : cut_from + 1])
                pieces.append(frame[cut_to - 1 : cut_to])
                kept_until = cut_to
                cut_from = -1
            depth -= run
            if depth < 0:
                return None
    if depth != 0:
        return None
    if not pieces:
        return frame
    pieces.append(frame[kept_until:])
    return frame[:0].join(pieces)
