"""The top entries of a py-spy ``raw`` profile (collapsed stacks): self and total share.

py-spy's ``raw`` format is one line per distinct stack, ``frame;frame;...;frame count``, the
innermost frame last, each frame ``function (file:line)`` (``--function`` and ``--nolineno``
leave the line out). "Self" counts the samples whose innermost frame is the function; "total"
the samples with the function anywhere on the stack (once per stack, however deep it recurs).

Usage::

    .venv/bin/python scripts/pyspy_top.py PROFILE [--top N] [--exclude TEXT ...]

``--exclude`` leaves out every stack with a frame containing the text: ``_find_and_load``
leaves out the imports of the start-up, which the comparison's CPU figure does not count.
"""

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_LINE_NUMBER = re.compile(r":\d+\)$")


def read_stacks(lines: Iterable[str]) -> Counter[tuple[str, ...]]:
    """Samples per stack, each frame without its line number (functions, not lines)."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in lines:
        match = _LINE.match(line.rstrip("\n"))
        if match is None:
            continue
        frames = tuple(_LINE_NUMBER.sub(")", frame) for frame in match["stack"].split(";"))
        stacks[frames] += int(match["count"])
    return stacks


def top_entries(
    stacks: Counter[tuple[str, ...]], top: int
) -> tuple[int, list[tuple[str, int, int]]]:
    """The sample total and the ``top`` functions by self samples: (function, self, total)."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    for frames, count in stacks.items():
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            anywhere[frame] += count
    entries = [(name, count, anywhere[name]) for name, count in own.most_common(top)]
    return sum(stacks.values()), entries


def render(samples: int, entries: Sequence[tuple[str, int, int]]) -> str:
    """A Markdown table of the entries, as shares of every sample."""
    lines = ["| function | self | total |", "| --- | ---: | ---: |"]
    for name, own, total in entries:
        lines.append(f"| `{name}` | {own / samples:.1%} | {total / samples:.1%} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the top entries of one profile."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--exclude", action="append", default=[])
    args = parser.parse_args(argv)
    with args.profile.open(encoding="utf-8") as lines:
        stacks = read_stacks(lines)
    kept = Counter(
        {
            frames: count
            for frames, count in stacks.items()
            if not any(text in frame for frame in frames for text in args.exclude)
        }
    )
    samples, entries = top_entries(kept, args.top)
    print(f"{samples:,} samples\n\n{render(samples, entries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
